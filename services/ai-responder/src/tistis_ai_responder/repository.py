"""SQL for leads, conversations and messages. Takes a connection, never commits."""

from __future__ import annotations

import uuid

import asyncpg
from tistis_common.events import InboundMessage


async def upsert_lead(conn: asyncpg.Connection, e: InboundMessage) -> uuid.UUID:
    """New leads come from the first message on any channel, with the name and phone given."""
    return await conn.fetchval(
        """INSERT INTO leads (tenant_id, channel, platform_user_id, name, phone, last_inbound_at)
           VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 = 'lead' THEN $7::timestamptz END)
           ON CONFLICT (tenant_id, channel, platform_user_id) DO UPDATE SET
             name = COALESCE(leads.name, EXCLUDED.name),
             phone = COALESCE(leads.phone, EXCLUDED.phone),
             last_inbound_at = GREATEST(leads.last_inbound_at, EXCLUDED.last_inbound_at),
             updated_at = now()
           RETURNING id""",
        e.tenant_id, e.channel.value, e.platform_user_id, e.display_name, e.phone,
        e.sender_type, e.sent_at,
    )


async def upsert_conversation(
    conn: asyncpg.Connection, e: InboundMessage, lead_id: uuid.UUID
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                      platform_conversation_id)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, lead_id, channel) DO UPDATE SET
             platform_conversation_id = COALESCE(EXCLUDED.platform_conversation_id,
                                                 conversations.platform_conversation_id),
             updated_at = now()
           RETURNING id, status""",
        e.tenant_id, lead_id, e.channel.value, e.platform_account_id, e.platform_conversation_id,
    )


async def insert_inbound_message(
    conn: asyncpg.Connection, e: InboundMessage, conversation_id: uuid.UUID, lead_id: uuid.UUID
) -> uuid.UUID | None:
    """None when the platform message id is already stored (a retried webhook)."""
    payload = e.model_dump(
        mode="json", include={"media", "location", "reply_to", "choice_id", "choice_title"},
        exclude_none=True,
    )
    return await conn.fetchval(
        """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                 sender_type, kind, content, payload, platform_message_id,
                                 event_id, status, sent_at)
           VALUES ($1, $2, $3, $4, 'inbound', $5, $6, $7, $8, $9, $10, 'received', $11)
           ON CONFLICT DO NOTHING
           RETURNING id""",
        e.tenant_id, conversation_id, lead_id, e.channel.value, e.sender_type, e.kind, e.text,
        payload, e.platform_message_id, e.event_id, e.sent_at,
    )


async def touch_conversation_inbound(
    conn: asyncpg.Connection, conversation_id: uuid.UUID, e: InboundMessage
) -> None:
    """A patient message opens the 24 h window and counts towards auto escalation."""
    if e.sender_type == "lead":
        await conn.execute(
            """UPDATE conversations SET
                 last_inbound_at = GREATEST(last_inbound_at, $2),
                 unresolved_inbound = unresolved_inbound + 1, updated_at = now()
               WHERE id = $1""",
            conversation_id, e.sent_at,
        )
