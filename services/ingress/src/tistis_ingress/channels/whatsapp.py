"""WhatsApp Cloud API webhooks (`object: whatsapp_business_account`, `entry[].changes[].value`).

Handled: `messages` (text, interactive button/list replies, template quick-reply `button`,
image, audio, video, document, sticker, location), `statuses` (sent, delivered, read, failed),
`user_preferences` (marketing stop/resume) and `smb_message_echoes` (what staff send from the
WhatsApp Business app on a coexistence number: agent messages). Everything else is ignored.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from tistis_common.events import (
    Channel,
    InboundMessage,
    Location,
    MediaRef,
    MessageStatus,
    OptOutChanged,
)
from tistis_common.ids import stable_id

from .base import (
    Context,
    MalformedPayload,
    Normalized,
    from_seconds,
    inbound_event_id,
    status_event_id,
    text_or_none,
    verify_meta_signature,
)

MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
STATUSES = ("sent", "delivered", "read", "failed")


class WhatsAppAdapter:
    channel = Channel.WHATSAPP

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        return verify_meta_signature(headers, body, secret)

    def normalize(self, payload: object, ctx: Context) -> Normalized:
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            raise MalformedPayload("object is not whatsapp_business_account")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise MalformedPayload("entry is not a list")
        out = Normalized()
        try:
            for entry in entries:
                for change in entry.get("changes") or []:
                    self._change(change, ctx, out)
        except MalformedPayload:
            raise
        except Exception as exc:  # any odd shape is the sender's fault, never a 500
            raise MalformedPayload(f"{type(exc).__name__}: {exc}") from exc
        return out

    def _change(self, change: dict, ctx: Context, out: Normalized) -> None:
        field = change.get("field", "messages")
        value = change.get("value")
        if field == "message_template_status_update" and isinstance(value, dict) \
                and value.get("event") and value.get("message_template_id"):
            # Meta's template status webhook (APPROVED, REJECTED, PAUSED, DISABLED, ...):
            # https://developers.facebook.com/documentation/business-messaging/whatsapp/
            # webhooks/reference/message_template_status_update (copied in
            # LimaLb01/endpoint-flow docs_whatsappflow/docs_apiwhatsapp/).
            out.template_statuses.append((str(value["message_template_id"])[:64],
                                          str(value["event"]).upper()[:40]))
            return
        if field not in ("messages", "user_preferences", "smb_message_echoes"):
            out.ignore(field)
            return
        if not isinstance(value, dict):
            raise MalformedPayload("change without value")
        account = str(value["metadata"]["phone_number_id"])
        out.account_ids.add(account)
        names: dict[str, str | None] = {}
        for contact in value.get("contacts") or []:
            name = (contact.get("profile") or {}).get("name") or None
            for key in ("wa_id", "user_id"):
                if contact.get(key):
                    names[str(contact[key])] = name
        for msg in value.get("messages") or []:
            sender = msg.get("from") or msg.get("from_user_id")
            if not sender:
                raise MalformedPayload("message without sender")
            self._message(msg, str(sender), account, names, ctx, out, sender_type="lead")
        for msg in value.get("message_echoes") or []:
            recipient = msg.get("to") or msg.get("to_user_id")
            if not recipient:
                raise MalformedPayload("echo without recipient")
            self._message(msg, str(recipient), account, names, ctx, out, sender_type="agent")
        for status in value.get("statuses") or []:
            self._status(status, account, ctx, out)
        for pref in value.get("user_preferences") or []:
            self._preference(pref, account, ctx, out)

    def _message(self, msg: dict, user: str, account: str, names: dict[str, str | None],
                 ctx: Context, out: Normalized, *, sender_type: str) -> None:
        kind = msg.get("type")
        fields: dict[str, Any] = {}
        body: Any = msg.get(kind) if isinstance(kind, str) else None  # shape checked by use
        if kind == "text":
            fields = {"kind": "text", "text": str(body["body"])}
        elif kind == "interactive":
            reply_type = body.get("type")
            reply = body.get(reply_type) if reply_type in ("button_reply", "list_reply") else None
            if reply is None:
                out.ignore(f"interactive.{reply_type}")
                return
            fields = {"kind": "interactive", "text": str(reply["title"]),
                      "choice_id": str(reply["id"]), "choice_title": str(reply["title"])}
        elif kind == "button":  # a quick-reply button of a template
            fields = {"kind": "button", "text": text_or_none(body.get("text")),
                      "choice_id": text_or_none(body.get("payload")),
                      "choice_title": text_or_none(body.get("text"))}
        elif kind in MEDIA_KINDS:
            media = MediaRef(id=text_or_none(body.get("id")), url=text_or_none(body.get("url")),
                             mime_type=text_or_none(body.get("mime_type")),
                             caption=text_or_none(body.get("caption")),
                             filename=text_or_none(body.get("filename")))
            fields = {"kind": kind, "media": media, "text": media.caption}
        elif kind == "location":
            location = Location(latitude=float(body["latitude"]), longitude=float(body["longitude"]),
                                name=text_or_none(body.get("name")),
                                address=text_or_none(body.get("address")))
            fields = {"kind": "location", "location": location}
        else:  # reaction, order, system, unsupported, request_welcome, contacts...
            out.ignore(kind)
            return
        message_id = str(msg["id"])
        out.events.append(InboundMessage(
            event_id=inbound_event_id(ctx.tenant_id, self.channel, message_id),
            tenant_id=ctx.tenant_id,
            channel=self.channel,
            platform_account_id=account,
            platform_user_id=user,
            platform_message_id=message_id,
            sent_at=from_seconds(msg["timestamp"]),
            display_name=names.get(user) if sender_type == "lead" else None,
            phone="+" + user if user.isdigit() else None,
            reply_to=text_or_none((msg.get("context") or {}).get("id")),
            sender_type=sender_type,  # type: ignore[arg-type]
            **fields,
        ))

    def _status(self, status: dict, account: str, ctx: Context, out: Normalized) -> None:
        value = status.get("status")
        if value not in STATUSES:  # "deleted", "warning", ...: not a delivery state
            out.ignore(f"status.{value}")
            return
        message_id = str(status["id"])
        at = from_seconds(status["timestamp"])
        error = (status.get("errors") or [{}])[0]
        out.events.append(MessageStatus(
            event_id=status_event_id(ctx.tenant_id, self.channel, message_id, value, at),
            tenant_id=ctx.tenant_id,
            channel=self.channel,
            platform_account_id=account,
            platform_message_id=message_id,
            platform_user_id=text_or_none(status.get("recipient_id") or status.get("recipient_user_id")),
            status=value,
            status_at=at,
            error_code=int(error["code"]) if error.get("code") is not None else None,
            error_title=text_or_none(error.get("title")),
            platform_conversation_id=text_or_none((status.get("conversation") or {}).get("id")),
        ))

    def _preference(self, pref: dict, account: str, ctx: Context, out: Normalized) -> None:
        value = pref.get("value")
        if pref.get("category") != "marketing_messages" or value not in ("stop", "resume"):
            out.ignore(f"user_preferences.{pref.get('category')}.{value}")
            return
        user = str(pref.get("wa_id") or pref["user_id"])
        at = from_seconds(pref["timestamp"])
        out.events.append(OptOutChanged(
            event_id=stable_id("opt_out", ctx.tenant_id, self.channel, user, value, at.isoformat()),
            tenant_id=ctx.tenant_id,
            channel=self.channel,
            platform_account_id=account,
            platform_user_id=user,
            category="marketing_messages",
            opted_out=value == "stop",
            changed_at=at,
            detail=text_or_none(pref.get("detail")),
        ))
