"""Fake TikTok Business Messaging: `POST /open_api/{version}/business/message/send/`.

Request (TikTok API for Business): header `Access-Token` (no "Bearer"), body
`{"business_id", "recipient_type": "CONVERSATION", "recipient": <conversation id>,
  "message_type": "TEXT", "text": {"body": ...}}`.
Answer: `{"code": 0, "message": "OK", "request_id", "data": {"message": {"message_id"}}}`.
Errors come as a non-zero `code` with HTTP 200, as TikTok does; only a scripted `status`
changes the HTTP status (a gateway failure).

Tokens expire, as TikTok's do (about a day): a token `expires-<unix seconds>-...` is refused
with 40105 from that time on. `POST /open_api/{version}/tt_user/oauth2/refresh_token/` renews
one (TikTok Accounts API, whose tokens Business Messaging uses; shape in
tistis_dispatcher.tokens, sources github.com/bububa/tiktok-business ttuser.RefreshToken and
github.com/tiktok/tiktok-business-api-sdk): JSON `{"client_id", "client_secret", "grant_type":
"refresh_token", "refresh_token"}`, answered in the same envelope with `data.access_token`,
`expires_in` 86400, a new `refresh_token` (rotated: the one used is refused from then on),
`refresh_token_expires_in`, `open_id`, `scope`, `token_type`.
With a callback registered, every accepted send is followed by its `im_send_msg` echo (see
callbacks.py), before or after the answer.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tistis_sandbox.callbacks import post_tiktok_echo, schedule_tiktok_echo
from tistis_sandbox.recorder import Recorder, Step, apply_delay
from tistis_sandbox.wire import Answer, Call, expired_token, expiring_token

TEXT_MAX = 6000
OK = 0
INVALID_PARAMS = 40002
RATE_LIMITED = 40100
TOKEN_EMPTY = 40104
TOKEN_INVALID = 40105
SENDING_TOO_FAST = 40064
SYSTEM_ERROR = 50000
ACCESS_TOKEN_LIFETIME = 86400  # a day
REFRESH_TOKEN_LIFETIME = 365 * 86400

MESSAGES: dict[int, str] = {
    INVALID_PARAMS: "Invalid parameters",
    RATE_LIMITED: "Too many requests. Please retry in some time.",
    TOKEN_EMPTY: "Access token is null, you should set it in http header with key Access-Token.",
    TOKEN_INVALID: "Access token is incorrect or has been revoked.",
    SENDING_TOO_FAST: "You are sending messages too fast. Take a rest.",
    SYSTEM_ERROR: "System error. Please try again later.",
}


def request_id() -> str:
    # TikTok's look like a timestamp followed by hex: sortable and unique.
    return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + secrets.token_hex(12).upper()


def envelope(code: int, message: str | None = None, data: Any = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": "OK" if code == OK else (message or MESSAGES.get(code, "Error")),
        "request_id": request_id(),
        "data": data if data is not None else {},
    }


class Invalid(Exception):
    pass


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    for field in ("business_id", "recipient_type", "recipient", "message_type"):
        if not body.get(field):
            raise Invalid(f"{field}: Missing data for required field.")
    if body["recipient_type"] != "CONVERSATION":
        raise Invalid("recipient_type: Must be one of: CONVERSATION.")
    if not isinstance(body["recipient"], str):
        raise Invalid("recipient: Not a valid string.")
    kind = body["message_type"]
    if kind == "TEXT":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
            raise Invalid("text.body: Missing data for required field.")
        if len(text["body"]) > TEXT_MAX:
            raise Invalid(f"text.body: Length must be between 1 and {TEXT_MAX}.")
    elif kind == "IMAGE":
        image = body.get("image")
        if not isinstance(image, dict) or not image.get("media_id"):
            raise Invalid("image.media_id: Missing data for required field.")
    else:
        raise Invalid("message_type: Must be one of: TEXT, IMAGE.")


def _answer(step: Step | None, call: Call, body: Any) -> Answer:
    if step is not None and step.is_error:
        code = step.error_code or (RATE_LIMITED if step.status == 429 else SYSTEM_ERROR)
        return Answer(step.status or 200, envelope(code, step.message), step.headers)
    token = call.headers.get("access-token")
    if not token:
        return Answer(200, envelope(TOKEN_EMPTY))
    if token.startswith(("expired", "invalid", "Bearer ")) or expired_token(token):
        # "Bearer " is the classic mistake: TikTok wants the bare token and answers 40105.
        return Answer(200, envelope(TOKEN_INVALID))
    try:
        validate(body)
    except (Invalid, AttributeError, TypeError, KeyError, ValueError) as exc:
        return Answer(200, envelope(INVALID_PARAMS, str(exc)))
    message_id = secrets.token_urlsafe(18)
    return Answer(200, envelope(OK, data={"message": {"message_id": message_id}}))


async def handle(recorder: Recorder, call: Call) -> Answer:
    body = call.body
    entry = recorder.record("tiktok", call)
    step = recorder.next_step("tiktok")
    await apply_delay(step)
    if isinstance(body, dict) and isinstance(body.get("recipient"), str):
        entry.recipient = body["recipient"]
    answer = _answer(step, call, body)
    entry.status = answer.status
    if answer.body["code"] == OK:
        entry.answered_id = answer.body["data"]["message"]["message_id"]
        entry.text = (body.get("text") or {}).get("body")
        callback = recorder.callbacks.get("tiktok")
        if callback is not None and entry.answered_id:
            if callback.echo_before_answer:
                await post_tiktok_echo(callback, recorder.deliveries, body, entry.answered_id)
            else:
                schedule_tiktok_echo(callback, recorder.deliveries, body, entry.answered_id)
    else:
        entry.error_code = answer.body["code"]
    return answer


def _refreshed(recorder: Recorder, body: Any) -> Answer:
    if not isinstance(body, dict) or body.get("grant_type") != "refresh_token":
        return Answer(200, envelope(INVALID_PARAMS, "grant_type: Must be one of: refresh_token."))
    for field in ("client_id", "client_secret", "refresh_token"):
        if not isinstance(body.get(field), str) or not body[field]:
            return Answer(200, envelope(INVALID_PARAMS, f"{field}: Missing data for required field."))
    old = body["refresh_token"]
    if (old.startswith(("revoked", "invalid", "expired")) or expired_token(old)
            or old in recorder.used_refresh_tokens):
        return Answer(200, envelope(TOKEN_INVALID, "refresh_token is incorrect or has been revoked."))
    recorder.used_refresh_tokens.add(old)
    return Answer(200, envelope(OK, data={
        "access_token": expiring_token(ACCESS_TOKEN_LIFETIME, "act." + secrets.token_hex(16)),
        "expires_in": ACCESS_TOKEN_LIFETIME,
        "refresh_token": expiring_token(REFRESH_TOKEN_LIFETIME, "rft." + secrets.token_hex(16)),
        "refresh_token_expires_in": REFRESH_TOKEN_LIFETIME,
        "open_id": "-" + secrets.token_hex(12), "scope": "user.info.basic,message.list.send",
        "token_type": "Bearer",
    }))


async def refresh(recorder: Recorder, call: Call) -> Answer:
    entry = recorder.record("tiktok", call)
    step = recorder.next_step("tiktok")
    await apply_delay(step)
    if step is not None and step.is_error:
        code = step.error_code or SYSTEM_ERROR
        answer = Answer(step.status or 200, envelope(code, step.message), step.headers)
    else:
        answer = _refreshed(recorder, call.body)
    entry.status = answer.status
    if answer.body["code"] != OK:
        entry.error_code = answer.body["code"]
    return answer
