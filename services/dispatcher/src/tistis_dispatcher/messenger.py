"""Messenger and Instagram messages (Send API, `POST /{version}/{page_or_ig_id}/messages`).

Both channels take text (Messenger <= 2,000 characters, Instagram <= 1,000 UTF-8 bytes), quick
replies (<= 13, titles <= 20) and the button template
(text <= 640, 1-3 postback buttons with titles <= 20). Inside the 24 h window a message goes as
`messaging_type` RESPONSE; outside it only a human agent's message may go, tagged HUMAN_AGENT,
within 7 days (the caller decides, see platform_rules.py). There are no templates like WhatsApp's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tistis_common.events import Button, OutboundMessage

from tistis_dispatcher.text import Size, split_text, utf8_bytes
from tistis_dispatcher.whatsapp import Unsendable, fit

TEXT_MAX = 2000
INSTAGRAM_TEXT_MAX_BYTES = 1000
QUICK_REPLIES_MAX = 13
QUICK_REPLY_TITLE_MAX = 20
PAYLOAD_MAX = 1000
BUTTON_TEXT_MAX = 640
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
ATTACHMENT_TYPES = {"image": "image", "audio": "audio", "video": "video", "document": "file"}


def envelope(recipient: str, message: dict[str, Any], messaging_type: str,
             tag: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"recipient": {"id": recipient}, "messaging_type": messaging_type,
                            "message": message}
    if tag:
        body["tag"] = tag
    return body


def text_limit(channel: str) -> tuple[int, Size]:
    """The text limit and how the platform counts it."""
    return (INSTAGRAM_TEXT_MAX_BYTES, utf8_bytes) if channel == "instagram" else (TEXT_MAX, len)


def fit_text(text: str, channel: str) -> str:
    limit, size = text_limit(channel)
    if size(fit(text, 10**9, "text")) > limit:
        raise Unsendable("too_long", f"text over {limit} ({channel} counts {size.__name__})")
    return text


def quick_replies(text: str, choices: Sequence[Button], channel: str = "facebook") -> dict[str, Any]:
    if not 1 <= len(choices) <= QUICK_REPLIES_MAX:
        raise Unsendable("unsupported", f"{len(choices)} quick replies (1 to {QUICK_REPLIES_MAX})")
    return {"text": fit_text(text, channel), "quick_replies": [
        {"content_type": "text", "title": fit(c.title, QUICK_REPLY_TITLE_MAX, "quick reply"),
         "payload": fit(c.id, PAYLOAD_MAX, "payload")}
        for c in choices
    ]}


def button_template(text: str, buttons: Sequence[Button]) -> dict[str, Any]:
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise Unsendable("unsupported", f"{len(buttons)} buttons (1 to {BUTTONS_MAX})")
    return {"attachment": {"type": "template", "payload": {
        "template_type": "button",
        "text": fit(text, BUTTON_TEXT_MAX, "button text"),
        "buttons": [{"type": "postback", "title": fit(b.title, BUTTON_TITLE_MAX, "button title"),
                     "payload": fit(b.id, PAYLOAD_MAX, "payload")} for b in buttons],
    }}}


def render(event: OutboundMessage, recipient: str, messaging_type: str, tag: str | None,
           max_parts: int) -> list[dict[str, Any]]:
    text = event.text or ""

    def wrap(message: dict[str, Any]) -> dict[str, Any]:
        return envelope(recipient, message, messaging_type, tag)

    channel = event.channel.value
    if event.kind == "text":
        limit, size = text_limit(channel)
        return [wrap({"text": p}) for p in split_text(fit(text, 10**9, "text"), limit,
                                                         max_parts, size)]
    if event.kind == "buttons":
        # The button template when it fits; quick replies take a longer text.
        if len(event.buttons) <= BUTTONS_MAX and len(text) <= BUTTON_TEXT_MAX:
            return [wrap(button_template(text, event.buttons))]
        return [wrap(quick_replies(text, event.buttons, channel))]
    if event.kind == "quick_replies":
        return [wrap(quick_replies(text, event.buttons, channel))]
    if event.kind == "list":
        rows = [Button(id=r.id, title=r.title) for s in event.sections for r in s.rows]
        return [wrap(quick_replies(text, rows, channel))]
    if event.kind == "media" and event.media is not None and (event.media.url or event.media.id):
        kind = ATTACHMENT_TYPES.get(event.media_type or "")
        if kind is None:
            raise Unsendable("unsupported", f"media type {event.media_type}")
        # By link (saved for reuse), or by the id of an upload (Attachment Upload API).
        payload = ({"url": event.media.url, "is_reusable": True} if event.media.url
                   else {"attachment_id": event.media.id})
        return [wrap({"attachment": {"type": kind, "payload": payload}})]
    raise Unsendable("unsupported", f"{event.kind} on {event.channel}")
