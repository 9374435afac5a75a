"""TikTok Business Messaging webhooks.

The envelope: `client_key`, `event`, `create_time` (unix s), `user_openid` (the business
account) and `content`, the event itself as a JSON *string*. Events:
- `im_receive_msg` (and the guide's subscription name `direct_message.receive`): a patient wrote.
- `im_send_msg`: the business account sent a message (staff in the TikTok app): agent message.
- `im_mark_read_msg`: the patient read the conversation up to `read.last_read_timestamp`.
Signature: `Tiktok-Signature: t=<unix s>,s=<hex HMAC-SHA256 of "<t>." + raw body>`.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from starlette.datastructures import Headers
from tistis_common.events import Channel, InboundMessage, MediaRef, MessageStatus

from .base import (
    Context,
    MalformedPayload,
    Normalized,
    StaleSignature,
    from_millis,
    hmac_sha256_hex,
    inbound_event_id,
    status_event_id,
    text_or_none,
)

RECEIVE_EVENTS = ("im_receive_msg", "direct_message.receive")


def parse_signature_header(header: str) -> tuple[int, str] | None:
    parts: dict[str, str] = {}
    for element in header.split(","):
        key, sep, value = element.strip().partition("=")
        if sep:
            parts[key] = value
    t, s = parts.get("t", ""), parts.get("s", "")
    if not t.isdigit() or not s:
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

    def normalize(self, payload: object, ctx: Context) -> Normalized:
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            raise MalformedPayload("not a TikTok webhook envelope")
        out = Normalized()
        try:
            self._envelope(payload, ctx, out)
        except MalformedPayload:
            raise
        except Exception as exc:  # any odd shape is the sender's fault, never a 500
            raise MalformedPayload(f"{type(exc).__name__}: {exc}") from exc
        return out

    def _envelope(self, payload: dict, ctx: Context, out: Normalized) -> None:
        event = payload["event"]
        business = str(payload["user_openid"])
        out.account_ids.add(business)
        if event not in (*RECEIVE_EVENTS, "im_send_msg", "im_mark_read_msg"):
            out.ignore(event)
            return
        content = payload["content"]
        content = json.loads(content) if isinstance(content, str) else content
        if not isinstance(content, dict):
            raise MalformedPayload("content is not an object")
        if event == "im_mark_read_msg":
            self._read(content, business, ctx, out)
        elif event == "im_send_msg":
            out.account_ids.add(str(content["from_user"]["id"]))
            self._message(content, str(content["to_user"]["id"]), business, ctx, out,
                          sender_type="agent", name=None)
        else:
            out.account_ids.add(str(content["to_user"]["id"]))
            self._message(content, str(content["from_user"]["id"]), business, ctx, out,
                          sender_type="lead", name=text_or_none(content.get("from")))

    def _message(self, content: dict, user: str, business: str, ctx: Context, out: Normalized,
                 *, sender_type: str, name: str | None) -> None:
        kind = content.get("type")
        fields: dict[str, Any]
        if kind == "text":
            fields = {"kind": "text", "text": str(content["text"]["body"])}
        elif kind == "image":
            image = content.get("image") or {}
            fields = {"kind": "image", "media": MediaRef(id=text_or_none(image.get("media_id")),
                                                         url=text_or_none(image.get("url")))}
        elif kind == "share_post":
            post = content.get("share_post") or {}
            url = text_or_none(post.get("embed_url"))
            fields = {"kind": "share", "text": url,
                      "media": MediaRef(id=text_or_none(post.get("video_id")), url=url)}
        else:  # sticker, emoji, video, ... not handled
            out.ignore(f"message.{kind}")
            return
        message_id = str(content["message_id"])
        reference = content.get("referenced_message_info") or {}
        out.events.append(InboundMessage(
            event_id=inbound_event_id(ctx.tenant_id, self.channel, message_id),
            tenant_id=ctx.tenant_id, channel=self.channel, platform_account_id=business,
            platform_user_id=user, platform_message_id=message_id,
            platform_conversation_id=text_or_none(content.get("conversation_id")),
            sent_at=from_millis(content["timestamp"]), display_name=name,
            reply_to=text_or_none(reference.get("referenced_message_id")),
            sender_type=sender_type,  # type: ignore[arg-type]
            **fields,
        ))

    def _read(self, content: dict, business: str, ctx: Context, out: Normalized) -> None:
        reader = str(content["from_user"]["id"])
        if reader == business:  # the business read the patient's messages: nothing of ours
            out.ignore("im_mark_read_msg.business")
            return
        conversation = str(content["conversation_id"])
        at = from_millis(content["read"]["last_read_timestamp"])
        out.events.append(MessageStatus(
            event_id=status_event_id(ctx.tenant_id, self.channel, conversation, "read", at),
            tenant_id=ctx.tenant_id, channel=self.channel, platform_account_id=business,
            platform_message_id=conversation, platform_user_id=reader,
            platform_conversation_id=conversation, status="read", status_at=at,
            scope="conversation",
        ))
