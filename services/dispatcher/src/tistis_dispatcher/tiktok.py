"""TikTok Business Messaging (`POST /open_api/{version}/business/message/send/`): text only.

Body: `business_id` (the connection's platform account id), `recipient_type` CONVERSATION,
`recipient` the conversation id (conversations.platform_conversation_id), `message_type` TEXT,
`text.body` (<= 6000 characters). Choices (buttons, lists) become numbered lines of text.
"""

from __future__ import annotations

from typing import Any

from tistis_common.events import OutboundMessage

from tistis_dispatcher.text import split_text
from tistis_dispatcher.whatsapp import Unsendable, fit

TEXT_MAX = 6000


def text_body(business_id: str, conversation_id: str, text: str) -> dict[str, Any]:
    return {"business_id": business_id, "recipient_type": "CONVERSATION",
            "recipient": conversation_id, "message_type": "TEXT",
            "text": {"body": fit(text, TEXT_MAX, "text")}}


def as_text(event: OutboundMessage) -> str:
    titles = [b.title for b in event.buttons] or [r.title for s in event.sections for r in s.rows]
    if event.kind in ("buttons", "quick_replies", "list") and titles:
        options = "\n".join(f"{i}. {t}" for i, t in enumerate(titles, 1))
        return f"{event.text or ''}\n\n{options}".strip()
    if event.kind == "text":
        return event.text or ""
    raise Unsendable("unsupported", f"{event.kind} on tiktok (text only)")


def render(event: OutboundMessage, business_id: str, conversation_id: str,
           max_parts: int) -> list[dict[str, Any]]:
    text = fit(as_text(event), 10**9, "text")
    return [text_body(business_id, conversation_id, p)
            for p in split_text(text, TEXT_MAX, max_parts)]
