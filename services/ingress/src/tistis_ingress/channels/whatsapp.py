"""WhatsApp Cloud API webhooks (`object: whatsapp_business_account`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from starlette.datastructures import Headers
from tistis_common.events import Channel, InboundMessage
from tistis_common.ids import stable_id

from .base import MalformedPayload, Normalized, verify_meta_signature


def inbound_event_id(tenant_id: uuid.UUID, channel: Channel, platform_message_id: str) -> uuid.UUID:
    # The same platform message always becomes the same event: retries are duplicates downstream.
    return stable_id("inbound", tenant_id, channel, platform_message_id)


class WhatsAppAdapter:
    channel = Channel.WHATSAPP

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        return verify_meta_signature(headers, body, secret)

    def normalize(self, payload: object, tenant_id: uuid.UUID) -> Normalized:
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            raise MalformedPayload("object is not whatsapp_business_account")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise MalformedPayload("entry is not a list")
        out = Normalized()
        try:
            for entry in entries:
                for change in entry.get("changes", []):
                    self._change(change, tenant_id, out)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise MalformedPayload(str(exc)) from exc
        return out

    def _change(self, change: dict, tenant_id: uuid.UUID, out: Normalized) -> None:
        value = change.get("value") or {}
        if change.get("field") not in (None, "messages"):
            out.ignored.append(str(change.get("field")))
            return
        account = str(value["metadata"]["phone_number_id"])
        out.account_ids.add(account)
        names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts", [])}
        for msg in value.get("messages", []):
            if msg.get("type") != "text":
                out.ignored.append(str(msg.get("type")))
                continue
            sender = str(msg["from"])
            out.events.append(
                InboundMessage(
                    event_id=inbound_event_id(tenant_id, self.channel, msg["id"]),
                    tenant_id=tenant_id,
                    channel=self.channel,
                    platform_account_id=account,
                    platform_user_id=sender,
                    platform_message_id=str(msg["id"]),
                    sent_at=datetime.fromtimestamp(int(msg["timestamp"]), UTC),
                    kind="text",
                    text=str(msg["text"]["body"]),
                    display_name=names.get(sender),
                    phone="+" + sender if sender.isdigit() else None,
                )
            )
