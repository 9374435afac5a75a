"""Status webhooks the fake WhatsApp sends back after a send, as the platform does.

Cloud API accepts a message synchronously and reports `sent`, `delivered`, `read` — or
`failed` with an error such as 131026 — later, through the webhook. Register the ingress URL
with `POST /_sandbox/callbacks/whatsapp` and every accepted send is followed by those
webhooks, signed with the app secret; a script step `{"async_error_code": 131026}` makes the
next send succeed and then fail by webhook.
"""

from __future__ import annotations

import asyncio
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
