"""TikTok Business Messaging webhooks.

The envelope: `client_key`, `event`, `create_time` (unix s), `user_openid` (the business
account) and `content`, the event itself as a JSON *string*. Events:
- `im_receive_msg` (and the guide's subscription name `direct_message.receive`): a patient wrote.
- `im_send_msg`: the business account sent a message: from staff in the TikTok app an agent
  message; our own API sends (each part of a split text too, and an echo arriving before the
  send's answer) are recognised by the ai-responder by id or text and never hand over.
- `im_mark_read_msg`: the patient read the conversation up to `read.last_read_timestamp`.
Signature: `Tiktok-Signature: t=<unix s>,s=<hex HMAC-SHA256 of "<t>." + raw body>`.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Any

from starlette.datastructures import Headers
from tistis_common.events import Channel, InboundMessage, MediaRef, MessageStatus

from .base import (
    Item,
    MalformedPayload,
    Normalized,
    Routing,
    StaleSignature,
    as_dict,
    from_millis,
    hmac_sha256_hex,
    inbound_event_id,
    load_json,
    require,
    status_event_id,
    text_or_none,
)

RECEIVE_EVENTS = ("im_receive_msg", "direct_message.receive")
HANDLED_EVENTS = (*RECEIVE_EVENTS, "im_send_msg", "im_mark_read_msg")
# A signature header's timestamp: unix seconds, ASCII digits only (`²` is a digit to
# `str.isdigit()` and not to `int()`), at most 12 of them (year 33658): anything longer
# cannot be within the tolerance, and is refused before any conversion.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


def parse_signature_header(header: str) -> tuple[int, str] | None:
    """`t=<unix s>,s=<hex>` as (t, s), or None for any other header (never raises)."""
    parts: dict[str, str] = {}
    for element in header[:512].split(","):
        key, sep, value = element.strip().partition("=")
        if sep:
            parts[key] = value.strip()
    t, s = parts.get("t", ""), parts.get("s", "")
    if not TIMESTAMP.fullmatch(t) or not SIGNATURE.fullmatch(s):
        return None
    return int(t), s.lower()


class TikTokAdapter:
    channel = Channel.TIKTOK

    def __init__(self, tolerance_seconds: int = 300):
        self.tolerance = tolerance_seconds

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        parsed = parse_signature_header(headers.get("tiktok-signature", ""))
        if parsed is None:
            return False
        t, s = parsed
        expected = hmac_sha256_hex(secret, f"{t}.".encode() + body)
        if not hmac.compare_digest(s.encode(), expected.encode()):
            return False
        if abs(time.time() - t) > self.tolerance:
            raise StaleSignature(f"timestamp {t} outside {self.tolerance}s")
        return True

    def items(self, payload: object) -> list[Item]:
        """One envelope, one item, routed by `user_openid` (the business account)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            raise MalformedPayload("not a TikTok webhook envelope")
        business = payload.get("user_openid")
        if not isinstance(business, str | int) or isinstance(business, bool):
            return [Item("", "envelope", payload)]
        return [Item(str(business), "envelope", payload)]

    def normalize(self, item: Item, routing: Routing, out: Normalized) -> None:
        payload, business = item.raw, item.account
        event = payload["event"]
        if event not in HANDLED_EVENTS:
            out.ignore(event)
            return
        content = payload["content"]
        content = load_json(content) if isinstance(content, str) else content
        content = as_dict(content, "content")
        if event == "im_mark_read_msg":
            self._read(content, business, routing, out)
        elif event == "im_send_msg":
            require(str(content["from_user"]["id"]) == business, "sender is not the account")
            self._message(content, str(content["to_user"]["id"]), business, routing, out,
                          sender_type="agent", name=None)
        else:
            require(str(content["to_user"]["id"]) == business, "recipient is not the account")
            self._message(content, str(content["from_user"]["id"]), business, routing, out,
                          sender_type="lead", name=text_or_none(content.get("from")))

    def _message(self, content: dict, user: str, business: str, routing: Routing, out: Normalized,
                 *, sender_type: str, name: str | None) -> None:
        kind = content.get("type")
        body = content.get(kind) if isinstance(kind, str) else None
        body = body if isinstance(body, dict) else {}
        fields: dict[str, Any]
        if kind == "text":
            fields = {"kind": "text", "text": str(content["text"]["body"])}
        elif kind in ("image", "video"):
            fields = {"kind": kind, "media": MediaRef(id=text_or_none(body.get("media_id")),
                                                      url=text_or_none(body.get("url")))}
        elif kind == "sticker":
            fields = {"kind": "sticker", "media": MediaRef(id=text_or_none(body.get("id")),
                                                           url=text_or_none(body.get("url")))}
        elif kind == "emoji":
            fields = {"kind": "text", "text": text_or_none(body.get("body") or body.get("emoji"))
                      or "(emoji)"}
        elif kind == "share_post":
            url = text_or_none(body.get("embed_url"))
            fields = {"kind": "share", "text": url,
                      "media": MediaRef(id=text_or_none(body.get("video_id")), url=url)}
        else:  # a type we cannot show yet: stored, staff see what it was
            fields = {"kind": "unsupported", "error": f"type {kind}"[:100]}
        message_id = str(content["message_id"])
        reference = content.get("referenced_message_info") or {}
        out.events.append(InboundMessage(
            event_id=inbound_event_id(routing.tenant_id, self.channel, message_id),
            tenant_id=routing.tenant_id, channel=self.channel, platform_account_id=business,
            platform_user_id=user, platform_message_id=message_id,
            platform_conversation_id=text_or_none(content.get("conversation_id")),
            sent_at=from_millis(content["timestamp"]), display_name=name,
            reply_to=text_or_none(reference.get("referenced_message_id")),
            sender_type=sender_type,  # type: ignore[arg-type]
            **fields,
        ))

    def _read(self, content: dict, business: str, routing: Routing, out: Normalized) -> None:
        reader = str(content["from_user"]["id"])
        if reader == business:  # the business read the patient's messages: nothing of ours
            out.ignore("im_mark_read_msg.business")
            return
        conversation = str(content["conversation_id"])
        at = from_millis(content["read"]["last_read_timestamp"])
        out.events.append(MessageStatus(
            event_id=status_event_id(routing.tenant_id, self.channel, conversation, "read", at),
            tenant_id=routing.tenant_id, channel=self.channel, platform_account_id=business,
            platform_message_id=conversation, platform_user_id=reader,
            platform_conversation_id=conversation, status="read", status_at=at,
            scope="conversation",
        ))
