"""Fake Messenger / Instagram Send API: `POST /{version}/{page_or_ig_id}/messages`.

Answers `{"recipient_id": ..., "message_id": "m_..."}` or a Graph error; a sender action
(`{"recipient": {"id": ...}, "sender_action": "mark_seen" | "typing_on" | ...}`, Meta "Sender
Actions", https://developers.facebook.com/docs/messenger-platform/send-messages/sender-actions
and .../instagram/features/sender-actions) answers `{"recipient_id": ...}`. Only HUMAN_AGENT is
accepted as a message tag: the other tags are deprecated, and a fake that accepted them would
hide a bug the real platform would refuse.

Instagram (an account id starting with 178, as Instagram professional account ids do) takes at
most 1,000 UTF-8 bytes of text ("must be UTF-8 and less than 1000 bytes", Instagram messaging
API reference). A patient whose window the test closed (`POST /_sandbox/windows`) gets what
the platform answers outside the window: Instagram code 10 / subcode 2534022, Messenger code
10 / subcode 2018278 (HUMAN_AGENT tagged messages still go on Messenger).

Instagram API with Instagram Login tokens last 60 days and are renewed with
`GET /refresh_access_token?grant_type=ig_refresh_token&access_token=<long-lived token>`
(graph.instagram.com; developers.facebook.com/documentation/instagram-platform/reference/
refresh_access_token): `{"access_token", "token_type": "bearer", "expires_in"}`; an expired or
invalid token is a Graph error 190.
"""

from __future__ import annotations

import re
from typing import Any

from tistis_sandbox.meta import (
    bearer_or_query_token,
    graph_error,
    random_token,
    scripted_graph_error,
    token_error,
)
from tistis_sandbox.recorder import Recorder, Step, apply_delay
from tistis_sandbox.wire import Answer, Call, expiring_token

TEXT_MAX = 2000
INSTAGRAM_TOKEN_LIFETIME = 60 * 86400
INSTAGRAM_TEXT_MAX_BYTES = 1000
INSTAGRAM_ACCOUNT_PREFIX = "178"
INSTAGRAM_WINDOW_SUBCODE = 2534022
MESSENGER_WINDOW_SUBCODE = 2018278
QUICK_REPLIES_MAX = 13
QUICK_REPLY_TITLE_MAX = 20
PAYLOAD_MAX = 1000
BUTTON_TEXT_MAX = 640
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
GENERIC_ELEMENTS_MAX = 10
GENERIC_TITLE_MAX = 80
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
VALID_TAGS = ("HUMAN_AGENT",)
DEPRECATED_TAGS = (
    "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "CUSTOMER_FEEDBACK",
)
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen", "react", "unreact")
MEDIA_TYPES = ("image", "audio", "video", "file")
URL = re.compile(r"^https?://\S+$")


class Invalid(Exception):
    def __init__(self, details: str, code: int = 100, subcode: int | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.subcode = subcode
        self.details = details


def _str(value: Any, limit: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"(#100) {what} is required")
    if len(value) > limit:
        raise Invalid(f"(#100) {what} must be at most {limit} characters", subcode=2018047)
    return value


def _url(value: Any, what: str) -> None:
    if not isinstance(value, str) or not URL.match(value):
        raise Invalid(f"(#100) {what} should represent a valid URL")


def _validate_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise Invalid("(#100) buttons[] must be objects")
    kind = button.get("type")
    _str(button.get("title"), BUTTON_TITLE_MAX, "buttons[].title")
    if kind == "web_url":
        _url(button.get("url"), "buttons[].url")
    elif kind == "postback":
        _str(button.get("payload"), PAYLOAD_MAX, "buttons[].payload")
    elif kind != "phone_number":
        raise Invalid("(#100) buttons[].type must be one of web_url, postback, phone_number")


def _validate_buttons(buttons: Any) -> None:
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= BUTTONS_MAX:
        raise Invalid(f"(#100) buttons must contain 1 to {BUTTONS_MAX} elements")
    for button in buttons:
        _validate_button(button)


def _validate_attachment(att: Any) -> None:
    if not isinstance(att, dict):
        raise Invalid("(#100) message.attachment must be an object")
    kind = att.get("type")
    payload = att.get("payload")
    if not isinstance(payload, dict):
        raise Invalid("(#100) message.attachment.payload is required")
    if kind in MEDIA_TYPES:
        if "attachment_id" not in payload:
            _url(payload.get("url"), "attachment.payload.url")
        return
    if kind != "template":
        raise Invalid("(#100) attachment.type must be one of template, image, audio, video, file")
    template_type = payload.get("template_type")
    if template_type == "button":
        _str(payload.get("text"), BUTTON_TEXT_MAX, "payload.text")
        _validate_buttons(payload.get("buttons"))
    elif template_type == "generic":
        elements = payload.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= GENERIC_ELEMENTS_MAX:
            raise Invalid(f"(#100) elements must contain 1 to {GENERIC_ELEMENTS_MAX} elements")
        for element in elements:
            _str(element.get("title"), GENERIC_TITLE_MAX, "elements[].title")
            if "subtitle" in element:
                _str(element["subtitle"], GENERIC_TITLE_MAX, "elements[].subtitle")
            if "buttons" in element:
                _validate_buttons(element["buttons"])
    else:
        raise Invalid("(#100) template_type must be one of button, generic")


def _validate_quick_replies(replies: Any) -> None:
    if not isinstance(replies, list) or not 1 <= len(replies) <= QUICK_REPLIES_MAX:
        raise Invalid(f"(#100) quick_replies must contain 1 to {QUICK_REPLIES_MAX} elements")
    for reply in replies:
        kind = reply.get("content_type") if isinstance(reply, dict) else None
        if kind == "text":
            _str(reply.get("title"), QUICK_REPLY_TITLE_MAX, "quick_replies[].title")
            _str(reply.get("payload"), PAYLOAD_MAX, "quick_replies[].payload")
        elif kind not in ("user_phone_number", "user_email"):
            raise Invalid("(#100) quick_replies[].content_type must be text, "
                          "user_phone_number or user_email")


def validate(body: Any, instagram: bool = False) -> None:
    if not isinstance(body, dict):
        raise Invalid("(#100) Request body must be a JSON object")
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not recipient.get("id"):
        raise Invalid("(#100) The parameter recipient is required")
    if "sender_action" in body:
        if body["sender_action"] not in SENDER_ACTIONS:
            raise Invalid("(#100) sender_action is not valid")
        return
    messaging_type = body.get("messaging_type")
    if messaging_type not in MESSAGING_TYPES:
        raise Invalid("(#100) messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG")
    if messaging_type == "MESSAGE_TAG":
        tag = body.get("tag")
        if tag in DEPRECATED_TAGS:
            raise Invalid(f"(#100) Tag {tag} is deprecated", subcode=2018344)
        if tag not in VALID_TAGS:
            raise Invalid("(#100) Param tag must be HUMAN_AGENT")
    message = body.get("message")
    if not isinstance(message, dict):
        raise Invalid("(#100) The parameter message is required")
    has_text, has_att = "text" in message, "attachment" in message
    if has_text == has_att:
        raise Invalid("(#100) message must have exactly one of text or attachment")
    if has_text:
        _str(message["text"], TEXT_MAX, "message.text")
        if instagram and len(message["text"].encode("utf-8", "surrogatepass")) > \
                INSTAGRAM_TEXT_MAX_BYTES:
            raise Invalid("(#100) Length of param message[text] must be less than or equal "
                          f"to {INSTAGRAM_TEXT_MAX_BYTES} bytes")
    else:
        _validate_attachment(message["attachment"])
    if "quick_replies" in message:
        _validate_quick_replies(message["quick_replies"])


def summary(body: dict[str, Any]) -> str | None:
    message = body.get("message") or {}
    if "text" in message:
        return message["text"]
    payload = (message.get("attachment") or {}).get("payload") or {}
    return payload.get("text") or payload.get("url")


def account_of(call: Call) -> str:
    parts = call.path.strip("/").split("/")
    return parts[1] if len(parts) >= 3 else ""


def _outside_window(recorder: Recorder, account: str, body: Any) -> Answer | None:
    if not isinstance(body, dict) or "sender_action" in body:
        return None
    user = str((body.get("recipient") or {}).get("id") or "")
    if (account, user) not in recorder.closed_windows:
        return None
    if account.startswith(INSTAGRAM_ACCOUNT_PREFIX):
        return graph_error(10, subcode=INSTAGRAM_WINDOW_SUBCODE, status=400,
                           message="(#10) This message is sent outside of allowed window.")
    if body.get("tag") == "HUMAN_AGENT":
        return None
    return graph_error(10, subcode=MESSENGER_WINDOW_SUBCODE, status=400,
                       message="(#10) This message is sent outside of allowed window.")


def _answer(recorder: Recorder, step: Step | None, call: Call, body: Any) -> Answer:
    if step is not None and step.is_error:
        return scripted_graph_error(step, whatsapp=False)
    bad_token = token_error(bearer_or_query_token(call), whatsapp=False)
    if bad_token is not None:
        return bad_token
    account = account_of(call)
    try:
        validate(body, instagram=account.startswith(INSTAGRAM_ACCOUNT_PREFIX))
    except Invalid as exc:
        return graph_error(exc.code, subcode=exc.subcode, message=exc.details)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        return graph_error(100, message=f"(#100) Invalid parameter: {exc}")
    closed = _outside_window(recorder, account, body)
    if closed is not None:
        return closed
    answer: dict[str, str] = {"recipient_id": str(body["recipient"]["id"])}
    if "sender_action" not in body:
        answer["message_id"] = "m_" + random_token(40, "abcdefghijklmnopqrstuvwxyz"
                                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    return Answer(200, answer)


async def handle(recorder: Recorder, call: Call) -> Answer:
    body = call.body
    entry = recorder.record("graph", call)
    step = recorder.next_step("graph")
    await apply_delay(step)
    if isinstance(body, dict) and "sender_action" in body:
        entry.kind = str(body["sender_action"])
    elif isinstance(body, dict) and isinstance(body.get("recipient"), dict):
        entry.recipient = str(body["recipient"].get("id") or "") or None
    answer = _answer(recorder, step, call, body)
    entry.status = answer.status
    if answer.status == 200:
        entry.answered_id = answer.body.get("message_id")
        entry.text = summary(body)
    else:
        entry.error_code = answer.body["error"]["code"]
    return answer


async def refresh_instagram(recorder: Recorder, call: Call) -> Answer:
    """GET /refresh_access_token (Instagram API with Instagram Login)."""
    entry = recorder.record("graph", call)
    step = recorder.next_step("graph")
    await apply_delay(step)
    if step is not None and step.is_error:
        answer = scripted_graph_error(step, whatsapp=False)
    elif call.query.get("grant_type") != "ig_refresh_token":
        answer = graph_error(100, message="(#100) grant_type must be ig_refresh_token")
    else:
        answer = token_error(call.query.get("access_token"), whatsapp=False) or Answer(200, {
            "access_token": expiring_token(INSTAGRAM_TOKEN_LIFETIME,
                                           "IGAA" + random_token(40, "abcdefABCDEF0123456789")),
            "token_type": "bearer", "expires_in": INSTAGRAM_TOKEN_LIFETIME})
    entry.status = answer.status
    if answer.status != 200:
        entry.error_code = answer.body["error"]["code"]
    return answer
