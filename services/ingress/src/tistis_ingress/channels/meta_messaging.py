"""Messenger (`object: page`) and Instagram (`object: instagram`) webhooks.

Both send `entry[].messaging[]` (and `entry[].standby[]` when another app owns the thread) with
the same event shapes: `message` (text, quick reply, attachments, echoes), `postback`,
`delivery` and `read`. Instagram's dashboard "Test" button sends `entry[].changes[]` instead,
for an account id "0": acknowledged and counted as a test, never a patient message. A real
`changes[]` `messages` item is read like a `messaging[]` event.

Echoes (`message.is_echo`): sent by the Page/account itself. With our app id they are our own
replies (counted, dropped); from any other app or the native inbox they are staff messages.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from tistis_common.events import Channel, InboundMessage, Location, MediaRef, MessageStatus

from .base import (
    Context,
    MalformedPayload,
    Normalized,
    from_millis,
    inbound_event_id,
    status_event_id,
    text_or_none,
    verify_meta_signature,
)

ATTACHMENT_KINDS = {"image": "image", "audio": "audio", "video": "video", "file": "document",
                    "location": "location", "share": "share", "ig_reel": "share", "reel": "share",
                    "story_mention": "share"}
DASHBOARD_TEST_ACCOUNT = "0"


class MetaMessagingAdapter:
    channel: Channel
    object_name: str

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        return verify_meta_signature(headers, body, secret)

    def normalize(self, payload: object, ctx: Context) -> Normalized:
        if not isinstance(payload, dict) or payload.get("object") != self.object_name:
            raise MalformedPayload(f"object is not {self.object_name}")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise MalformedPayload("entry is not a list")
        out = Normalized()
        try:
            for entry in entries:
                account = str(entry["id"])
                for event in [*(entry.get("messaging") or []), *(entry.get("standby") or [])]:
                    out.account_ids.add(account)
                    self._event(event, account, ctx, out)
                for change in entry.get("changes") or []:
                    self._change(change, account, ctx, out)
        except MalformedPayload:
            raise
        except Exception as exc:  # any odd shape is the sender's fault, never a 500
            raise MalformedPayload(f"{type(exc).__name__}: {exc}") from exc
        return out

    def _change(self, change: dict, account: str, ctx: Context, out: Normalized) -> None:
        if change.get("field") != "messages":
            out.ignore(change.get("field"))
        elif account == DASHBOARD_TEST_ACCOUNT:
            out.ignore("test_event")
        else:
            out.account_ids.add(account)
            self._event(change["value"], account, ctx, out)

    def _event(self, event: dict, account: str, ctx: Context, out: Normalized) -> None:
        sender, recipient = str(event["sender"]["id"]), str(event["recipient"]["id"])
        message = event.get("message")
        if isinstance(message, dict):
            if message.get("is_echo"):
                out.account_ids.add(sender)
                if str(message.get("app_id")) in ctx.our_app_ids:
                    out.echoes += 1
                    return
                self._message(message, event, recipient, sender, ctx, out, sender_type="agent")
            else:
                out.account_ids.add(recipient)
                self._message(message, event, sender, recipient, ctx, out, sender_type="lead")
        elif isinstance(event.get("postback"), dict):
            out.account_ids.add(recipient)
            self._postback(event["postback"], event, sender, recipient, ctx, out)
        elif isinstance(event.get("delivery"), dict):
            out.account_ids.add(recipient)
            self._delivery(event["delivery"], event, sender, recipient, ctx, out)
        elif isinstance(event.get("read"), dict):
            out.account_ids.add(recipient)
            self._read(event["read"], event, sender, recipient, ctx, out)
        else:  # reaction, referral, optin, handover, message_edit...
            kinds = [k for k in event if k not in ("sender", "recipient", "timestamp")]
            out.ignore(kinds[0] if kinds else "empty")

    def _inbound(self, ctx: Context, message_id: str, user: str, account: str, event: dict,
                 **fields: Any) -> InboundMessage:
        return InboundMessage(
            event_id=inbound_event_id(ctx.tenant_id, self.channel, message_id),
            tenant_id=ctx.tenant_id, channel=self.channel, platform_account_id=account,
            platform_user_id=user, platform_message_id=message_id,
            sent_at=from_millis(event["timestamp"]), **fields,
        )

    def _message(self, message: dict, event: dict, user: str, account: str, ctx: Context,
                 out: Normalized, *, sender_type: str) -> None:
        if message.get("is_deleted") or message.get("is_unsupported"):
            out.ignore("deleted" if message.get("is_deleted") else "unsupported")
            return
        mid = str(message["mid"])
        reply_to = text_or_none((message.get("reply_to") or {}).get("mid"))
        common = {"reply_to": reply_to, "sender_type": sender_type}
        text = text_or_none(message.get("text"))
        attachments = message.get("attachments") or []
        quick_reply = message.get("quick_reply")
        if quick_reply:
            out.events.append(self._inbound(
                ctx, mid, user, account, event, kind="quick_reply", text=text,
                choice_id=text_or_none(quick_reply.get("payload")), choice_title=text, **common))
            return
        if not attachments:
            if text is None:
                out.ignore("empty_message")
                return
            out.events.append(self._inbound(ctx, mid, user, account, event, kind="text", text=text,
                                            **common))
            return
        # One event per attachment (several photos in one message); the first keeps the mid.
        for i, attachment in enumerate(attachments):
            kind = ATTACHMENT_KINDS.get(attachment.get("type"))
            if kind is None:  # template, fallback, product...
                out.ignore(f"attachment.{attachment.get('type')}")
                continue
            payload = attachment.get("payload") or {}
            fields: dict[str, Any] = {"kind": kind, "text": text if i == 0 else None}
            if kind == "location":
                coords = payload.get("coordinates") or {}
                fields["location"] = Location(latitude=float(coords["lat"]),
                                              longitude=float(coords["long"]),
                                              name=text_or_none(attachment.get("title")))
            else:
                fields["media"] = MediaRef(
                    id=text_or_none(payload.get("attachment_id") or payload.get("sticker_id")
                                    or payload.get("reel_video_id")),
                    url=text_or_none(payload.get("url")), caption=text if i == 0 else None,
                    filename=text_or_none(attachment.get("title")) if kind == "document" else None,
                )
                if payload.get("sticker_id") is not None and kind == "image":
                    fields["kind"] = "sticker"
            message_id = mid if i == 0 else f"{mid}#{i}"
            out.events.append(self._inbound(ctx, message_id, user, account, event, **fields,
                                            **common))

    def _postback(self, postback: dict, event: dict, user: str, account: str, ctx: Context,
                  out: Normalized) -> None:
        # Postbacks carry a mid on current API versions; older ones get a stable stand-in.
        mid = postback.get("mid") or f"postback:{user}:{event['timestamp']}:{postback.get('payload')}"
        title = text_or_none(postback.get("title"))
        out.events.append(self._inbound(
            ctx, str(mid), user, account, event, kind="postback", text=title,
            choice_id=text_or_none(postback.get("payload")), choice_title=title))

    def _status(self, ctx: Context, account: str, user: str, message_id: str, status: str,
                at_ms: object, *, scope: str = "message") -> MessageStatus:
        at = from_millis(at_ms)
        return MessageStatus(
            event_id=status_event_id(ctx.tenant_id, self.channel, message_id, status, at),
            tenant_id=ctx.tenant_id, channel=self.channel, platform_account_id=account,
            platform_message_id=message_id, platform_user_id=user, status=status,  # type: ignore[arg-type]
            status_at=at, scope=scope,  # type: ignore[arg-type]
        )

    def _delivery(self, delivery: dict, event: dict, user: str, account: str, ctx: Context,
                  out: Normalized) -> None:
        at = delivery.get("watermark") or event["timestamp"]
        mids = delivery.get("mids") or []
        for mid in mids:
            out.events.append(self._status(ctx, account, user, str(mid), "delivered", at))
        if not mids:  # only a watermark: everything sent to this user up to it
            out.events.append(self._status(ctx, account, user, user, "delivered", at,
                                           scope="conversation"))

    def _read(self, read: dict, event: dict, user: str, account: str, ctx: Context,
              out: Normalized) -> None:
        if read.get("mid"):  # Instagram names the message read
            out.events.append(self._status(ctx, account, user, str(read["mid"]), "read",
                                           event["timestamp"]))
        else:  # Messenger gives a watermark
            out.events.append(self._status(ctx, account, user, user, "read",
                                           read.get("watermark") or event["timestamp"],
                                           scope="conversation"))


class FacebookAdapter(MetaMessagingAdapter):
    channel = Channel.FACEBOOK
    object_name = "page"


class InstagramAdapter(MetaMessagingAdapter):
    channel = Channel.INSTAGRAM
    object_name = "instagram"
