"""Webhooks the fakes send back after a send, as the platforms do.

TikTok reports every message the business account sent, ours included, as `im_send_msg`:
register the ingress URL with `POST /_sandbox/callbacks/tiktok` (with the conversations'
patients, and `echo_before_answer` to have the echo arrive before the send's answer).

Cloud API accepts a message synchronously and reports `sent`, `delivered`, `read` — or
`failed` with an error such as 131026 — later, through the webhook. Register the ingress URL
with `POST /_sandbox/callbacks/whatsapp` and every accepted send is followed by those
webhooks, signed with the app secret; a script step `{"async_error_code": 131026}` makes the
next send succeed and then fail by webhook.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tistis_sandbox import webhooks
from tistis_sandbox.meta import GRAPH_CODES

_tasks: set[asyncio.Task[None]] = set()


@dataclass
class Callback:
    url: str
    app_secret: str = webhooks.DEFAULT_SECRET
    statuses: list[str] = field(default_factory=lambda: ["sent", "delivered", "read"])
    delay: float = 0.05
    # TikTok: the patient behind each conversation id (the echo names them), and whether the
    # echo reaches the webhook before the send's own answer (TikTok gives no order).
    conversations: dict[str, str] = field(default_factory=dict)
    echo_before_answer: bool = False


@dataclass
class Delivery:
    url: str
    message_id: str
    status: str
    http_status: int | None
    error: str | None
    time: float


def schedule_whatsapp_statuses(callback: Callback, log: list[Delivery], *, message_id: str,
                               recipient: str, phone_number_id: str,
                               async_error_code: int | None) -> None:
    if async_error_code is not None:
        plan: list[tuple[str, int | None]] = [("failed", async_error_code)]
    else:
        plan = [(s, None) for s in callback.statuses]
    if not plan:
        return
    task = asyncio.create_task(_post_statuses(callback, log, plan, message_id=message_id,
                                              recipient=recipient,
                                              phone_number_id=phone_number_id))
    _tasks.add(task)  # keep a reference: the loop only holds tasks weakly
    task.add_done_callback(_tasks.discard)


async def _post_statuses(callback: Callback, log: list[Delivery],
                         plan: list[tuple[str, int | None]], **ids: Any) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for status, code in plan:
            await asyncio.sleep(callback.delay)
            title = GRAPH_CODES.get(code, (400, "Message failed"))[1] if code else None
            payload = webhooks.whatsapp_status(
                ids["message_id"], status, ids["recipient"], error_code=code,
                error_title=title, phone_number_id=ids["phone_number_id"])
            body, headers = webhooks.sign_meta(payload, callback.app_secret)
            try:
                r = await http.post(callback.url, content=body, headers=headers)
                log.append(Delivery(callback.url, ids["message_id"], status, r.status_code,
                                    None, time.time()))
            except httpx.HTTPError as exc:
                # The platform would retry; the sandbox records the miss and moves on.
                log.append(Delivery(callback.url, ids["message_id"], status, None, str(exc),
                                    time.time()))


def tiktok_echo(callback: Callback, body: dict[str, Any], message_id: str) -> tuple[bytes,
                                                                                   dict[str, str]]:
    """The `im_send_msg` TikTok sends for every message the business account sent, ours (API)
    included: from the business to the patient, the text as sent."""
    conversation = str(body.get("recipient"))
    content = {
        "timestamp": int(time.time() * 1000),
        "from_user": {"id": body.get("business_id"), "role": "business_account"},
        "to_user": {"id": callback.conversations.get(conversation, conversation),
                    "role": "personal_account"},
        "conversation_id": conversation, "message_id": message_id,
        "type": "text", "text": {"body": (body.get("text") or {}).get("body", "")},
    }
    payload = {"client_key": webhooks.DEFAULT_TIKTOK_CLIENT_KEY, "event": "im_send_msg",
               "create_time": int(time.time()), "user_openid": body.get("business_id"),
               "content": json.dumps(content, ensure_ascii=False, separators=(",", ":"))}
    signed = webhooks.sign_tiktok(payload, callback.app_secret)
    return signed.body, signed.headers


async def post_tiktok_echo(callback: Callback, log: list[Delivery], body: dict[str, Any],
                           message_id: str) -> None:
    raw, headers = tiktok_echo(callback, body, message_id)
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            r = await http.post(callback.url, content=raw, headers=headers)
            log.append(Delivery(callback.url, message_id, "im_send_msg", r.status_code, None,
                                time.time()))
        except httpx.HTTPError as exc:
            log.append(Delivery(callback.url, message_id, "im_send_msg", None, str(exc),
                                time.time()))


def schedule_tiktok_echo(callback: Callback, log: list[Delivery], body: dict[str, Any],
                         message_id: str) -> None:
    async def later() -> None:
        await asyncio.sleep(callback.delay)
        await post_tiktok_echo(callback, log, body, message_id)

    task = asyncio.create_task(later())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
