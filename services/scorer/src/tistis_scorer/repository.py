"""The scorer's SQL. Every function takes a connection inside `tenant_tx` and never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from .engagement import PREFIX, EngagementFacts
from .scoring import Change


async def scoring_settings(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, Any] | None:
    return await conn.fetchval("SELECT settings -> 'scoring' FROM tenants WHERE id = $1", tenant_id)


async def lock_lead(conn: asyncpg.Connection, lead_id: uuid.UUID) -> asyncpg.Record | None:
    """Serializes score events of one lead. NO KEY UPDATE, not UPDATE: inserting the lead's
    messages (foreign key share locks) is not blocked meanwhile."""
    return await conn.fetchrow(
        """SELECT id, score, classification, spam, not_interested FROM leads
           WHERE id = $1 FOR NO KEY UPDATE""",
        lead_id,
    )


async def has_history(conn: asyncpg.Connection, lead_id: uuid.UUID) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM lead_score_events WHERE lead_id = $1)", lead_id
    )


async def insert_changes(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, lead_id: uuid.UUID, event_id: uuid.UUID,
    message_id: uuid.UUID | None, changes: Sequence[tuple[Change, str]], reason: str | None,
) -> None:
    """One history row per change; `changes` pairs each change with its source."""
    await conn.executemany(
        """INSERT INTO lead_score_events (tenant_id, lead_id, event_id, message_id, signal, points,
                                          rule_points, score_before, score_after, source, reason)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        [(tenant_id, lead_id, event_id, message_id, c.signal, c.points, c.rule_points, c.before,
          c.after, source, reason) for c, source in changes],
    )


async def update_lead(
    conn: asyncpg.Connection, lead_id: uuid.UUID, *, score: int, classification: str, spam: bool,
    not_interested: bool,
) -> None:
    await conn.execute(
        """UPDATE leads SET score = $2, classification = $3, spam = $4, not_interested = $5,
                            updated_at = now()
           WHERE id = $1""",
        lead_id, score, classification, spam, not_interested,
    )


async def insert_classification(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, event_id: uuid.UUID, lead_id: uuid.UUID,
    previous: str, classification: str, score: int, spam: bool,
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO lead_classifications (tenant_id, event_id, lead_id, previous, classification,
                                             score, spam)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
        tenant_id, event_id, lead_id, previous, classification, score, spam,
    )


async def engagement_credited(conn: asyncpg.Connection, lead_id: uuid.UUID) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT signal, sum(rule_points)::int AS credited FROM lead_score_events
           WHERE lead_id = $1 AND starts_with(signal, $2) GROUP BY signal""",
        lead_id, PREFIX,
    )
    return {r["signal"]: r["credited"] for r in rows}


async def engagement_facts(
    conn: asyncpg.Connection, lead_id: uuid.UUID, quick_within: timedelta
) -> EngagementFacts:
    row = await conn.fetchrow(
        """SELECT
             (SELECT count(*) FROM messages
               WHERE lead_id = $1 AND direction = 'inbound' AND sender_type = 'lead') AS inbound,
             EXISTS (
               SELECT 1 FROM leads l, unnest(l.interested_services) AS wanted, services s
               WHERE l.id = $1 AND s.high_value
                 AND (lower(wanted) = lower(s.name)
                      OR lower(wanted) IN (SELECT lower(k) FROM unnest(s.keywords) AS k))
             ) AS high_value,
             EXISTS (
               SELECT 1 FROM appointments
               WHERE lead_id = $1 AND status IN ('booked', 'completed')
             ) AS booked,
             EXISTS (
               SELECT 1 FROM messages i JOIN messages o
                 ON o.conversation_id = i.conversation_id AND o.direction = 'outbound'
               WHERE i.lead_id = $1 AND i.direction = 'inbound' AND i.sender_type = 'lead'
                 AND coalesce(i.sent_at, i.created_at) > coalesce(o.sent_at, o.created_at)
                 AND coalesce(i.sent_at, i.created_at) <= coalesce(o.sent_at, o.created_at) + $2
             ) AS quick""",
        lead_id, quick_within,
    )
    return EngagementFacts(row["inbound"], row["high_value"], row["booked"], row["quick"])


async def history(conn: asyncpg.Connection, lead_id: uuid.UUID) -> list[asyncpg.Record]:
    """Why the lead has its score, oldest first."""
    return await conn.fetch(
        """SELECT event_id, message_id, signal, points, rule_points, score_before, score_after,
                  source, reason, created_at
           FROM lead_score_events WHERE lead_id = $1 ORDER BY id""",
        lead_id,
    )
