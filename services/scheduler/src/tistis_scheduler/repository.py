"""SQL of the scheduler. Takes a connection (inside `tenant_tx`), never commits."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from .availability import Branch

# ------------------------------------------------------------------ catalog, leads


def _branch(r: asyncpg.Record) -> Branch:
    return Branch(
        id=r["id"], name=r["name"], address=r["address"], timezone=ZoneInfo(r["timezone"]),
        opening_hours=r["opening_hours"] or {}, closed_days=frozenset(r["closed_days"] or ()),
        capacity=r["capacity"],
    )


async def branches(conn: asyncpg.Connection) -> list[Branch]:
    rows = await conn.fetch(
        """SELECT id, name, address, timezone, opening_hours, closed_days, capacity
           FROM branches ORDER BY name"""
    )
    return [_branch(r) for r in rows]


async def services(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, name, duration_minutes, keywords FROM services ORDER BY name"
    )


async def lead(conn: asyncpg.Connection, lead_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, channel, platform_user_id, name FROM leads WHERE id = $1", lead_id
    )


async def opted_out(conn: asyncpg.Connection, lead_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "SELECT opted_out_at IS NOT NULL FROM leads WHERE id = $1", lead_id))


async def lead_by_platform(conn: asyncpg.Connection, channel: str,
                           platform_user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, channel, platform_user_id, name FROM leads
           WHERE channel = $1 AND platform_user_id = $2""",
        channel, platform_user_id,
    )


async def conversation(conn: asyncpg.Connection, lead_id: uuid.UUID,
                       conversation_id: uuid.UUID | None) -> asyncpg.Record | None:
    """The given conversation of the lead, else the one on the lead's own channel."""
    return await conn.fetchrow(
        """SELECT c.id, c.channel, c.last_inbound_at FROM conversations c
           JOIN leads l ON l.id = c.lead_id
           WHERE c.lead_id = $1 AND ($2::uuid IS NULL OR c.id = $2)
           ORDER BY (c.channel = l.channel) DESC, c.updated_at DESC LIMIT 1""",
        lead_id, conversation_id,
    )


# ------------------------------------------------------------------ capacity


async def lock_branch_days(conn: asyncpg.Connection, keys: list[tuple[uuid.UUID, date]]) -> None:
    """Transaction-scoped advisory locks, always taken in sorted order (no deadlock between two
    bookings that want overlapping days)."""
    for branch_id, day in sorted(set(keys)):
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7500))", f"{branch_id}:{day.isoformat()}"
        )


async def claims(conn: asyncpg.Connection, branch_ids: list[uuid.UUID], start: datetime,
                 end: datetime,
                 exclude: uuid.UUID | None = None) -> dict[uuid.UUID, dict[datetime, set[int]]]:
    """Chairs taken per cell; `exclude` leaves out the appointment being moved."""
    rows = await conn.fetch(
        """SELECT branch_id, slot_start, chair_no FROM appointment_claims
           WHERE branch_id = ANY($1::uuid[]) AND slot_start >= $2 AND slot_start < $3
             AND appointment_id IS DISTINCT FROM $4""",
        branch_ids, start, end, exclude,
    )
    taken: dict[uuid.UUID, dict[datetime, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        taken[r["branch_id"]][r["slot_start"]].add(r["chair_no"])
    return taken


async def add_claims(conn: asyncpg.Connection, tenant_id: uuid.UUID, branch_id: uuid.UUID,
                     appointment_id: uuid.UUID, chairs: dict[datetime, int]) -> None:
    await conn.executemany(
        """INSERT INTO appointment_claims (tenant_id, branch_id, slot_start, chair_no, appointment_id)
           VALUES ($1, $2, $3, $4, $5)""",
        [(tenant_id, branch_id, cell, chair, appointment_id) for cell, chair in chairs.items()],
    )


async def drop_claims(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM appointment_claims WHERE appointment_id = $1", appointment_id)


# ------------------------------------------------------------------ appointments

_APPT = """SELECT a.id, a.lead_id, a.branch_id, a.service_id, a.conversation_id, a.scheduled_at,
                  a.ends_at, a.status FROM appointments a"""


async def appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_APPT + " WHERE a.id = $1 FOR UPDATE", appointment_id)


async def next_booked(conn: asyncpg.Connection, lead_id: uuid.UUID, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        _APPT + """ WHERE a.lead_id = $1 AND a.status = 'booked' AND a.scheduled_at > $2
                    ORDER BY a.scheduled_at LIMIT 1 FOR UPDATE""",
        lead_id, now,
    )


async def booked_at(conn: asyncpg.Connection, lead_id: uuid.UUID, branch_id: uuid.UUID,
                    start: datetime) -> uuid.UUID | None:
    """The lead's booking at exactly this time and place (the same choice arriving twice)."""
    return await conn.fetchval(
        """SELECT id FROM appointments WHERE lead_id = $1 AND branch_id = $2 AND scheduled_at = $3
             AND status = 'booked'""",
        lead_id, branch_id, start,
    )


async def insert_appointment(conn: asyncpg.Connection, *, id: uuid.UUID, tenant_id: uuid.UUID,
                             lead_id: uuid.UUID, branch_id: uuid.UUID, service_id: uuid.UUID | None,
                             conversation_id: uuid.UUID | None, start: datetime, end: datetime,
                             request_event_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO appointments (id, tenant_id, lead_id, branch_id, service_id, conversation_id,
                                     scheduled_at, ends_at, request_event_id, booked_at,
                                     created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)""",
        id, tenant_id, lead_id, branch_id, service_id, conversation_id, start, end,
        request_event_id, now,
    )


async def move_appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID, branch_id: uuid.UUID,
                           service_id: uuid.UUID | None, start: datetime, end: datetime,
                           now: datetime) -> None:
    """A new time needs a new reminder."""
    await conn.execute(
        """UPDATE appointments SET branch_id = $2, service_id = $3, scheduled_at = $4, ends_at = $5,
             reminder_sent = false, reminder_sent_at = NULL, needs_attention = false,
             attention_reason = NULL, booked_at = $6, updated_at = $6
           WHERE id = $1""",
        appointment_id, branch_id, service_id, start, end, now,
    )


async def set_appointment_status(conn: asyncpg.Connection, appointment_id: uuid.UUID,
                                 status: str, now: datetime) -> None:
    await conn.execute("UPDATE appointments SET status = $2, updated_at = $3 WHERE id = $1",
                       appointment_id, status, now)


async def confirm_appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID,
                              now: datetime) -> None:
    await conn.execute(
        """UPDATE appointments SET confirmed_at = COALESCE(confirmed_at, $2), updated_at = $2
           WHERE id = $1""",
        appointment_id, now,
    )


async def template_buttons(conn: asyncpg.Connection, template: str) -> list[str]:
    """The quick-reply buttons the tenant's WhatsApp template declares, in order."""
    found = await conn.fetchval(
        """SELECT settings->'templates'->$1->'buttons' FROM channel_connections
           WHERE channel = 'whatsapp' AND enabled ORDER BY created_at LIMIT 1""",
        template,
    )
    return [str(b) for b in found] if isinstance(found, list) else []


async def cancel_appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        "UPDATE appointments SET status = 'cancelled', updated_at = $2 WHERE id = $1",
        appointment_id, now,
    )


async def flag_appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID, reason: str,
                           now: datetime) -> bool:
    """True when the flag is new (staff are told once)."""
    return await conn.fetchval(
        """UPDATE appointments SET needs_attention = true, attention_reason = $2, updated_at = $3
           WHERE id = $1 AND NOT (needs_attention AND attention_reason IS NOT DISTINCT FROM $2)
           RETURNING true""",
        appointment_id, reason, now,
    ) is not None


# ------------------------------------------------------------------ offers


async def add_offer(conn: asyncpg.Connection, *, id: uuid.UUID, tenant_id: uuid.UUID, lead_id: uuid.UUID,
                    action: str, appointment_id: uuid.UUID | None, request_event_id: uuid.UUID,
                    now: datetime) -> None:
    await conn.execute(
        """INSERT INTO scheduler_offers (id, tenant_id, lead_id, action, appointment_id,
                                         request_event_id, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        id, tenant_id, lead_id, action, appointment_id, request_event_id, now,
    )


async def open_offer(conn: asyncpg.Connection, lead_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, action, appointment_id FROM scheduler_offers
           WHERE lead_id = $1 AND consumed_at IS NULL ORDER BY created_at DESC LIMIT 1""",
        lead_id,
    )


async def consume_offers(conn: asyncpg.Connection, lead_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        "UPDATE scheduler_offers SET consumed_at = $2 WHERE lead_id = $1 AND consumed_at IS NULL",
        lead_id, now,
    )


# ------------------------------------------------------------------ messages


async def insert_outbound(conn: asyncpg.Connection, *, id: uuid.UUID, tenant_id: uuid.UUID,
                          conversation_id: uuid.UUID, lead_id: uuid.UUID, channel: str, kind: str,
                          content: str, payload: dict, event_id: uuid.UUID, purpose: str,
                          now: datetime) -> bool:
    """A system message for the dispatcher to send (status pending); False if already stored."""
    return await conn.fetchval(
        """INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel, direction,
                                 sender_type, kind, content, payload, event_id, status, purpose,
                                 created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, 'outbound', 'system', $6, $7, $8, $9, 'pending', $10, $11, $11)
           ON CONFLICT DO NOTHING RETURNING true""",
        id, tenant_id, conversation_id, lead_id, channel, kind, content, payload, event_id,
        purpose, now,
    ) is not None
