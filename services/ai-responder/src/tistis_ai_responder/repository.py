"""SQL for leads, conversations and messages. Takes a connection, never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

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
    """A patient message opens the 24 h window, counts towards auto escalation and reopens a
    closed conversation (escalated and human ones stay with the staff)."""
    if e.sender_type == "lead":
        await conn.execute(
            """UPDATE conversations SET
                 status = CASE WHEN status = 'closed' THEN 'active' ELSE status END,
                 last_inbound_at = GREATEST(last_inbound_at, $2),
                 unresolved_inbound = unresolved_inbound + 1, updated_at = now()
               WHERE id = $1""",
            conversation_id, e.sent_at,
        )


async def inbound_message_id(conn: asyncpg.Connection, e: InboundMessage) -> uuid.UUID | None:
    """The stored row of a platform message (a redelivery finds what the first delivery wrote)."""
    return await conn.fetchval(
        """SELECT id FROM messages
           WHERE tenant_id = $1 AND channel = $2 AND platform_message_id = $3""",
        e.tenant_id, e.channel.value, e.platform_message_id,
    )


async def first_message_id(conn: asyncpg.Connection, lead_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval(
        "SELECT id FROM messages WHERE lead_id = $1 ORDER BY created_at, id LIMIT 1", lead_id
    )


async def set_conversation_human(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> None:
    """Staff answered from the platform's own app: the AI steps back."""
    await conn.execute(
        "UPDATE conversations SET status = 'human', updated_at = now() WHERE id = $1",
        conversation_id,
    )


async def conversation_for_reply(
    conn: asyncpg.Connection, conversation_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT c.id, c.status, c.unresolved_inbound, c.channel, c.platform_conversation_id,
                  l.id AS lead_id, l.platform_user_id, l.spam, l.name AS lead_name
           FROM conversations c JOIN leads l ON l.id = c.lead_id
           WHERE c.id = $1""",
        conversation_id,
    )


async def stored_reply(conn: asyncpg.Connection, message_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, payload FROM messages WHERE id = $1", message_id)


async def latest_patient_message(
    conn: asyncpg.Connection, conversation_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, created_at FROM messages
           WHERE conversation_id = $1 AND direction = 'inbound' AND sender_type = 'lead'
           ORDER BY created_at DESC, sent_at DESC NULLS LAST, id DESC LIMIT 1""",
        conversation_id,
    )


async def message_created_at(conn: asyncpg.Connection, message_id: uuid.UUID):  # -> datetime | None
    return await conn.fetchval("SELECT created_at FROM messages WHERE id = $1", message_id)


async def answered_since(conn: asyncpg.Connection, conversation_id: uuid.UUID, since) -> bool:
    """Has the clinic (AI or staff) already written after this point of the conversation?"""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM messages
                          WHERE conversation_id = $1 AND direction = 'outbound'
                            AND sender_type IN ('ai', 'agent') AND created_at > $2)""",
        conversation_id, since,
    ))


async def unanswered_texts(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> list[str]:
    """Patient texts since the clinic last wrote: the burst one reply must answer."""
    rows = await conn.fetch(
        """SELECT content FROM messages m
           WHERE m.conversation_id = $1 AND m.direction = 'inbound' AND m.sender_type = 'lead'
             AND m.content IS NOT NULL
             AND m.created_at > COALESCE(
               (SELECT max(created_at) FROM messages o
                WHERE o.conversation_id = $1 AND o.direction = 'outbound'), '-infinity')
           ORDER BY m.created_at, m.id""",
        conversation_id,
    )
    return [r["content"] for r in rows]


async def history(conn: asyncpg.Connection, conversation_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    rows = await conn.fetch(
        """SELECT direction, sender_type, kind, content, created_at FROM messages
           WHERE conversation_id = $1 AND status <> 'failed'
           ORDER BY created_at DESC, id DESC LIMIT $2""",
        conversation_id, limit,
    )
    return list(reversed(rows))


async def ai_context(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record | None:
    """The tenant's AI settings with its name and timezone (defaults when no row was set up)."""
    return await conn.fetchrow(
        """SELECT t.name AS tenant_name, t.timezone, a.system_prompt, a.temperature, a.max_tokens,
                  a.response_style, a.business_hours, a.escalation_keywords,
                  a.auto_escalate_after_messages, a.ai_provider, a.model, a.language
           FROM tenants t LEFT JOIN ai_tenant_context a ON a.tenant_id = t.id
           WHERE t.id = $1""",
        tenant_id,
    )


async def catalog(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    """Services, branches and FAQs of the tenant in scope (RLS), in a stable order for caching."""
    return {
        "services": await conn.fetch(
            """SELECT id, name, description, price_min, price_max, currency, duration_minutes,
                      keywords FROM services ORDER BY name"""
        ),
        "branches": await conn.fetch(
            "SELECT id, name, address, phone, opening_hours FROM branches ORDER BY name"
        ),
        "faqs": await conn.fetch("SELECT question, answer, keywords FROM faqs ORDER BY question"),
    }


async def insert_ai_message(
    conn: asyncpg.Connection, *, message_id: uuid.UUID, tenant_id: uuid.UUID,
    conversation_id: uuid.UUID, lead_id: uuid.UUID, channel: str, text: str, purpose: str,
    payload: dict, fallback: bool, model: str | None, input_tokens: int | None,
    output_tokens: int | None, cache_read_tokens: int | None, latency_ms: int | None,
) -> bool:
    """False when this reply was already stored (a redelivery, or another replica won the race).

    Status 'pending': the dispatcher upserts the same row by id and owns the status from here.
    """
    stored = await conn.fetchval(
        """INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel, direction,
                                 sender_type, kind, content, payload, status, purpose, fallback,
                                 model, input_tokens, output_tokens, cache_read_tokens, latency_ms)
           VALUES ($1, $2, $3, $4, $5, 'outbound', 'ai', 'text', $6, $7, 'pending', $8, $9,
                   $10, $11, $12, $13, $14)
           ON CONFLICT (id) DO NOTHING
           RETURNING id""",
        message_id, tenant_id, conversation_id, lead_id, channel, text, payload, purpose,
        fallback, model, input_tokens, output_tokens, cache_read_tokens, latency_ms,
    )
    return stored is not None


async def escalate_conversation(
    conn: asyncpg.Connection, conversation_id: uuid.UUID, reason: str
) -> None:
    """Waiting for a human now; the patient-message count starts again."""
    await conn.execute(
        """UPDATE conversations SET status = 'escalated', escalation_reason = $2,
             escalated_at = now(), unresolved_inbound = 0, updated_at = now()
           WHERE id = $1 AND status IN ('active', 'escalated')""",
        conversation_id, reason,
    )


async def mark_resolved(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> None:
    """The patient's request led somewhere (an appointment request): counting starts again."""
    await conn.execute(
        "UPDATE conversations SET unresolved_inbound = 0, updated_at = now() WHERE id = $1",
        conversation_id,
    )


N8N_CONSUMER = "ai-responder.n8n"


async def handed_to_n8n(conn: asyncpg.Connection, reply_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)",
        N8N_CONSUMER, reply_id,
    ))


async def mark_handed_to_n8n(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                             reply_id: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO processed_events (consumer, event_id, tenant_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        N8N_CONSUMER, reply_id, tenant_id,
    )


async def is_own_echo(conn: asyncpg.Connection, e: InboundMessage) -> bool:
    """A "staff" message that is really one of our own sends coming back (TikTok reports our API
    sends as `im_send_msg`; an echo may beat the dispatcher's commit of the platform id, so the
    same text sent to the same patient in the last two minutes counts too)."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (
             SELECT 1 FROM messages m JOIN leads l ON l.id = m.lead_id
             WHERE m.direction = 'outbound' AND l.channel = $1 AND l.platform_user_id = $2
               AND (m.platform_message_id = $3
                    OR (m.content = $4 AND m.created_at > now() - interval '2 minutes')))""",
        e.channel.value, e.platform_user_id, e.platform_message_id, e.text,
    ))


async def set_opted_out(conn: asyncpg.Connection, channel: str, platform_user_id: str,
                        opted_out: bool, at: datetime) -> bool:
    result = await conn.execute(
        """UPDATE leads SET opted_out_at = CASE WHEN $3 THEN COALESCE(opted_out_at, $4) END,
             updated_at = now()
           WHERE channel = $1 AND platform_user_id = $2""",
        channel, platform_user_id, opted_out, at,
    )
    return result != "UPDATE 0"


async def release_conversation(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> None:
    """Staff hand the conversation back: the AI answers again, counting from zero."""
    await conn.execute(
        """UPDATE conversations SET status = 'active', escalation_reason = NULL,
             unresolved_inbound = 0, updated_at = now()
           WHERE id = $1 AND status IN ('escalated', 'human')""",
        conversation_id,
    )
