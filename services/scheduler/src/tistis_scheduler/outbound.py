"""Messages the scheduler sends: stored as pending system messages for the dispatcher, with the
`OutboundMessage` kept in the outbox in the same transaction. Ids are derived from what the
message is about, so a redelivered request or a second replica re-creates the same message."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from tistis_common.events import (
    Button,
    Channel,
    ListSection,
    OutboundKind,
    OutboundMessage,
    OutboundPurpose,
    TemplateRef,
)
from tistis_common.ids import stable_id

from . import repository as repo

TEMPLATE_LANGUAGE = "es_MX"


@dataclass(frozen=True)
class Recipient:
    tenant_id: uuid.UUID
    lead_id: uuid.UUID
    conversation_id: uuid.UUID
    channel: Channel
    platform_user_id: str
    name: str | None

    @property
    def display_name(self) -> str:
        # Template parameters may not be empty.
        return (self.name or "").strip() or "paciente"


async def recipient(conn: asyncpg.Connection, tenant_id: uuid.UUID, lead: asyncpg.Record,
                    conversation_id: uuid.UUID | None) -> tuple[Recipient | None, asyncpg.Record | None]:
    conv = await repo.conversation(conn, lead["id"], conversation_id)
    if conv is None:
        return None, None
    return Recipient(tenant_id, lead["id"], conv["id"], Channel(conv["channel"]),
                     lead["platform_user_id"], lead["name"]), conv


def message_id_for(tenant_id: uuid.UUID, key: tuple[object, ...]) -> uuid.UUID:
    return stable_id("scheduler-message", tenant_id, *key)


async def queue(
    conn: asyncpg.Connection, to: Recipient, *, key: tuple[object, ...], purpose: OutboundPurpose,
    text: str, now: datetime, correlation_id: uuid.UUID | None, source_event_id: uuid.UUID | None,
    template: TemplateRef | None = None, sections: list[ListSection] | None = None,
    list_button: str | None = None, quick_replies: list[Button] | None = None,
) -> OutboundMessage:
    """Store one outbound message and its event; `text` is what a human reads in the inbox."""
    message_id = message_id_for(to.tenant_id, key)
    kind: OutboundKind = ("template" if template else "list" if sections
                          else "quick_replies" if quick_replies else "text")
    event = OutboundMessage(
        event_id=stable_id("outbound", message_id), tenant_id=to.tenant_id, occurred_at=now,
        correlation_id=correlation_id, channel=to.channel, message_id=message_id,
        conversation_id=to.conversation_id, lead_id=to.lead_id, recipient_id=to.platform_user_id,
        sender_type="system", purpose=purpose, kind=kind,
        text=None if template else text, template=template, sections=sections or [],
        list_button=list_button, buttons=quick_replies or [],
    )
    body = event.model_dump(mode="json")
    await repo.insert_outbound(
        conn, id=message_id, tenant_id=to.tenant_id, conversation_id=to.conversation_id,
        lead_id=to.lead_id, channel=to.channel.value, kind=kind, content=text, payload=body,
        event_id=event.event_id, purpose=purpose, now=now,
    )
    return event


def template(name: str, *params: str) -> TemplateRef:
    return TemplateRef(name=name, language=TEMPLATE_LANGUAGE, body_params=list(params))
