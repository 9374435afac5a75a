"""SQL of the operator API and the callback. Functions take a connection already in the
tenant's scope (tenant_tx) and never commit; RLS keeps every read inside that tenant."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

CHANNELS = ("whatsapp", "instagram", "facebook", "tiktok")


async def tenant_of_key(pool: asyncpg.Pool, key_hash: str) -> uuid.UUID | None:
    # SECURITY DEFINER lookup (migrations 0600, 1200): the only query made before a tenant
    # scope; a disabled staff member's personal key is no key.
    return await pool.fetchval("SELECT tenant_id FROM api_key_principal($1)", key_hash)


async def tenant_of_conversation(pool: asyncpg.Pool, conversation_id: uuid.UUID) -> uuid.UUID | None:
    return await pool.fetchval("SELECT conversation_tenant($1)", conversation_id)


async def tenant_of_lead(pool: asyncpg.Pool, lead_id: uuid.UUID) -> uuid.UUID | None:
    return await pool.fetchval("SELECT lead_tenant($1)", lead_id)


async def integration_status(conn: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT channel, count(*) AS accounts, bool_or(enabled) AS enabled,
                  bool_and(healthy) FILTER (WHERE enabled) AS healthy,
                  (array_agg(last_error ORDER BY last_error_at DESC NULLS LAST))[1] AS last_error,
                  max(last_error_at) AS last_error_at
           FROM channel_connections GROUP BY channel"""
    )
    found = {r["channel"]: r for r in rows}
    status: dict[str, dict[str, Any]] = {}
    for channel in CHANNELS:
        r = found.get(channel)
        configured = bool(r and r["enabled"])
        status[channel] = {
            "configured": configured,
            "healthy": bool(r is not None and configured and r["healthy"]),
            "accounts": r["accounts"] if r else 0,
            "last_error": r["last_error"] if r else None,
            "last_error_at": r["last_error_at"] if r else None,
        }
    return status


async def leads(conn: asyncpg.Connection, band: str | None, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, channel, name, phone, email, score, classification, spam,
                  interested_services, opted_out_at, last_inbound_at, created_at
           FROM leads WHERE ($1::text IS NULL OR classification = $1)
           ORDER BY score DESC, created_at DESC LIMIT $2 OFFSET $3""",
        band, limit, offset,
    )


async def conversation(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT c.id, c.lead_id, c.channel, c.platform_account_id, c.status, c.escalation_reason,
                  c.escalated_at, c.needs_attention, c.last_inbound_at, c.last_outbound_at,
                  c.created_at, l.platform_user_id, l.name AS lead_name
           FROM conversations c JOIN leads l ON l.id = c.lead_id WHERE c.id = $1""",
        conversation_id,
    )


async def messages(conn: asyncpg.Connection, conversation_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, direction, sender_type, kind, content, payload, status, purpose,
                  platform_message_id, error_code, error_title, sent_at, created_at, updated_at
           FROM (SELECT * FROM messages WHERE conversation_id = $1
                 ORDER BY created_at DESC LIMIT $2) recent
           ORDER BY created_at""",
        conversation_id, limit,
    )


async def branch_exists(conn: asyncpg.Connection, branch_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM branches WHERE id = $1", branch_id))


async def service_exists(conn: asyncpg.Connection, service_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT true FROM services WHERE id = $1", service_id))


async def appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, lead_id, conversation_id, status FROM appointments WHERE id = $1",
        appointment_id,
    )


async def callback_event_id(conn: asyncpg.Connection, tenant_id: uuid.UUID, content_hash: str,
                            candidate: uuid.UUID, window_seconds: float) -> uuid.UUID:
    """The event id of this action within the window: the first one's, or `candidate` when
    there is none (rows past the window are dropped first, so the action goes again)."""
    await conn.execute(
        """DELETE FROM callback_requests
           WHERE tenant_id = $1 AND first_seen_at < now() - make_interval(secs => $2)""",
        tenant_id, window_seconds,
    )
    # A concurrent retry waits on the key and then gets the first one's id.
    return await conn.fetchval(
        """INSERT INTO callback_requests (tenant_id, content_hash, event_id) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, content_hash) DO UPDATE SET event_id = callback_requests.event_id
           RETURNING event_id""",
        tenant_id, content_hash, candidate,
    )
