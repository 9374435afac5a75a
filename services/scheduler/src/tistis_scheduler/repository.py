"""All SQL of the scheduler, returning typed rows. Takes a connection (inside `tenant_tx`),
never commits. Its processed marks and kept events go through `tistis_common.idempotency`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from .availability import Branch
from .catalog import Service


@dataclass(frozen=True)
class Lead:
    id: uuid.UUID
    channel: str
    platform_user_id: str
    name: str | None


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    channel: str
    last_inbound_at: datetime | None


@dataclass(frozen=True)
class Appointment:
    id: uuid.UUID
    lead_id: uuid.UUID
    branch_id: uuid.UUID
    service_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    scheduled_at: datetime
    ends_at: datetime
    status: str


@dataclass(frozen=True)
class Offer:
    id: uuid.UUID
    action: str  # book | reschedule
    appointment_id: uuid.UUID | None


@dataclass(frozen=True)
class DueReminder:
    """A booked appointment whose reminder is due, with its patient and branch."""

    id: uuid.UUID
    scheduled_at: datetime
    lead_id: uuid.UUID
    conversation_id: uuid.UUID | None
    branch: Branch  # without opening hours: only what the reminder names
    name: str | None
    platform_user_id: str


@dataclass(frozen=True)
class Silence:
    """A lead whose last message from us is newer than its own last one (a follow-up candidate)."""

    lead_id: uuid.UUID
    name: str | None
    platform_user_id: str
    score: int
    conversation_id: uuid.UUID
    channel: str
    last_in: datetime | None  # the patient's last message, None if it never wrote
    unanswered: int  # follow-ups sent since it

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


async def services(conn: asyncpg.Connection) -> list[Service]:
    rows = await conn.fetch(
        "SELECT id, name, duration_minutes, keywords FROM services ORDER BY name"
    )
    return [Service(r["id"], r["name"], timedelta(minutes=r["duration_minutes"]),
                    tuple(r["keywords"] or ())) for r in rows]


async def lead(conn: asyncpg.Connection, lead_id: uuid.UUID) -> Lead | None:
    row = await conn.fetchrow(
        "SELECT id, channel, platform_user_id, name FROM leads WHERE id = $1", lead_id
    )
    return Lead(**row) if row else None


async def opted_out(conn: asyncpg.Connection, lead_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "SELECT opted_out_at IS NOT NULL FROM leads WHERE id = $1", lead_id))


async def lead_by_platform(conn: asyncpg.Connection, channel: str,
                           platform_user_id: str) -> Lead | None:
    row = await conn.fetchrow(
        """SELECT id, channel, platform_user_id, name FROM leads
           WHERE channel = $1 AND platform_user_id = $2""",
        channel, platform_user_id,
    )
    return Lead(**row) if row else None


async def conversation(conn: asyncpg.Connection, lead_id: uuid.UUID,
                       conversation_id: uuid.UUID | None) -> Conversation | None:
    """The given conversation of the lead, else the one on the lead's own channel."""
    row = await conn.fetchrow(
        """SELECT c.id, c.channel, c.last_inbound_at FROM conversations c
           JOIN leads l ON l.id = c.lead_id
           WHERE c.lead_id = $1 AND ($2::uuid IS NULL OR c.id = $2)
           ORDER BY (c.channel = l.channel) DESC, c.updated_at DESC LIMIT 1""",
        lead_id, conversation_id,
    )
    return Conversation(**row) if row else None


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


async def release_claims(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM appointment_claims WHERE appointment_id = $1", appointment_id)


# ------------------------------------------------------------------ appointments

_APPT = """SELECT a.id, a.lead_id, a.branch_id, a.service_id, a.conversation_id, a.scheduled_at,
                  a.ends_at, a.status FROM appointments a"""


async def appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> Appointment | None:
    row = await conn.fetchrow(_APPT + " WHERE a.id = $1 FOR UPDATE", appointment_id)
    return Appointment(**row) if row else None


async def next_booked(conn: asyncpg.Connection, lead_id: uuid.UUID, now: datetime) -> Appointment | None:
    row = await conn.fetchrow(
        _APPT + """ WHERE a.lead_id = $1 AND a.status = 'booked' AND a.scheduled_at > $2
                    ORDER BY a.scheduled_at LIMIT 1 FOR UPDATE""",
        lead_id, now,
    )
    return Appointment(**row) if row else None


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


async def delete_appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM appointments WHERE id = $1", appointment_id)


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
    """The quick-reply buttons the tenant's WhatsApp template declares, in order: in
    channel_connections.settings of the WhatsApp connection,
    {"templates": {"recordatorio_cita": {"buttons": ["confirm", "reschedule", "cancel"]}}}."""
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


async def open_offer(conn: asyncpg.Connection, lead_id: uuid.UUID) -> Offer | None:
    row = await conn.fetchrow(
        """SELECT id, action, appointment_id FROM scheduler_offers
           WHERE lead_id = $1 AND consumed_at IS NULL ORDER BY created_at DESC LIMIT 1""",
        lead_id,
    )
    return Offer(**row) if row else None


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


# ------------------------------------------------------------------ reminders


async def due_reminders(conn: asyncpg.Connection, now: datetime, ahead: timedelta, window: timedelta,
                        limit: int) -> list[DueReminder]:
    """Claimed (FOR UPDATE SKIP LOCKED) until `finish_reminder` or the end of the transaction."""
    rows = await conn.fetch(
        """SELECT a.id, a.scheduled_at, a.lead_id, a.conversation_id, a.branch_id,
                  l.name, l.platform_user_id,
                  b.name AS branch_name, b.address, b.timezone, b.capacity
           FROM appointments a
           JOIN leads l ON l.id = a.lead_id
           JOIN branches b ON b.id = a.branch_id
           WHERE a.status = 'booked' AND NOT a.reminder_sent
             AND a.scheduled_at > $1 AND a.scheduled_at - $2::interval <= $1
             AND (a.booked_at IS NULL OR a.booked_at <= a.scheduled_at - $2::interval)
             -- flagged for staff already: only worth another look once the patient wrote again
             AND NOT (a.needs_attention AND a.attention_reason LIKE 'reminder not sent%'
                      AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.lead_id = a.lead_id
                                        AND c.last_inbound_at > $1 - $4::interval))
           ORDER BY a.scheduled_at
           LIMIT $3
           FOR UPDATE OF a SKIP LOCKED""",
        now, ahead, limit, window,
    )
    return [DueReminder(
        id=r["id"], scheduled_at=r["scheduled_at"], lead_id=r["lead_id"],
        conversation_id=r["conversation_id"],
        branch=Branch(r["branch_id"], r["branch_name"], r["address"], ZoneInfo(r["timezone"]), {}),
        name=r["name"], platform_user_id=r["platform_user_id"],
    ) for r in rows]


async def finish_reminder(conn: asyncpg.Connection, appointment_id: uuid.UUID, now: datetime) -> None:
    """The reminder is queued: sent, and no longer needing attention for a reminder not sent."""
    await conn.execute(
        """UPDATE appointments SET reminder_sent = true, reminder_sent_at = $2, updated_at = $2,
             needs_attention = needs_attention
                               AND COALESCE(attention_reason, '') NOT LIKE 'reminder not sent%'
           WHERE id = $1""",
        appointment_id, now,
    )


# ------------------------------------------------------------------ follow-ups


async def silences(conn: asyncpg.Connection, now: datetime, silence: timedelta,
                   limit: int) -> list[Silence]:
    """Leads our last message to went unanswered for `silence`, not yet COLD for this silence;
    spam, not-interested, opted-out, staff-handled and with an appointment ahead left out."""
    rows = await conn.fetch(
        """WITH conv AS (
             SELECT l.id AS lead_id, l.name, l.platform_user_id, l.score, c.id AS conversation_id,
                    c.channel,
                    GREATEST(c.last_inbound_at, l.last_inbound_at) AS last_in,
                    -- every attempt counts, delivered or not: a failed follow-up is not
                    -- retried at once, it waits its 48 h like the others
                    (SELECT max(m.created_at) FROM messages m
                      WHERE m.conversation_id = c.id AND m.direction = 'outbound') AS last_out
             FROM leads l
             JOIN conversations c ON c.lead_id = l.id AND c.channel = l.channel
             WHERE NOT l.spam AND NOT l.not_interested AND l.opted_out_at IS NULL
               AND c.status = 'active'
               AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.lead_id = l.id
                                 AND a.status = 'booked' AND a.scheduled_at > $1)
           )
           SELECT conv.*,
                  (SELECT count(*) FROM followups f
                    WHERE f.lead_id = conv.lead_id
                      AND f.sent_at > COALESCE(conv.last_in, '-infinity')) AS unanswered
           FROM conv
           WHERE conv.last_out > COALESCE(conv.last_in, '-infinity') AND conv.last_out <= $1 - $2::interval
             AND NOT EXISTS (SELECT 1 FROM lead_cold_marks k WHERE k.lead_id = conv.lead_id
                               AND k.since_inbound IS NOT DISTINCT FROM conv.last_in)
           ORDER BY conv.last_out
           LIMIT $3""",
        now, silence, limit,
    )
    return [Silence(r["lead_id"], r["name"], r["platform_user_id"], r["score"], r["conversation_id"],
                    r["channel"], r["last_in"], r["unanswered"]) for r in rows]


async def mark_answered_followups(conn: asyncpg.Connection) -> None:
    """Follow-ups the patient answered since (kept for reporting; the count does not need it)."""
    await conn.execute(
        """UPDATE followups f SET answered_at = GREATEST(c.last_inbound_at, l.last_inbound_at)
           FROM leads l JOIN conversations c ON c.lead_id = l.id AND c.channel = l.channel
           WHERE f.lead_id = l.id AND f.answered_at IS NULL
             AND GREATEST(c.last_inbound_at, l.last_inbound_at) > f.sent_at"""
    )


async def mark_cold(conn: asyncpg.Connection, tenant_id: uuid.UUID, lead_id: uuid.UUID,
                    since: datetime | None, event_id: uuid.UUID, now: datetime) -> bool:
    """False when the lead is already COLD for this silence."""
    return bool(await conn.fetchval(
        """INSERT INTO lead_cold_marks (tenant_id, lead_id, since_inbound, event_id, marked_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
        tenant_id, lead_id, since, event_id, now,
    ))


async def claim_followup(conn: asyncpg.Connection, *, id: uuid.UUID, tenant_id: uuid.UUID,
                         lead_id: uuid.UUID, attempt: int, message_id: uuid.UUID,
                         now: datetime) -> bool:
    """The ladder step, by its deterministic id: False when another pass already took it."""
    return bool(await conn.fetchval(
        """INSERT INTO followups (id, tenant_id, lead_id, attempt, message_id, sent_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
        id, tenant_id, lead_id, attempt, message_id, now,
    ))
