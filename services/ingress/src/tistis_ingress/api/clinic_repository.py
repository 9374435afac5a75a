"""SQL of the inbox's clinic views: the appointments day, a lead with everything about the
person, and the reports. Connections come in the tenant's scope and are never committed here."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg

# The person a lead belongs to: leads linked by hand to the same primary, and leads whose phone
# numbers end in the same ten digits.
_PERSON = """
WITH RECURSIVE me AS (
  SELECT COALESCE((SELECT primary_lead_id FROM lead_links WHERE lead_id = $1), $1) AS id
), linked AS (
  SELECT id FROM me
  UNION SELECT k.lead_id FROM lead_links k, me WHERE k.primary_lead_id = me.id
), phones AS (
  SELECT DISTINCT right(regexp_replace(l.phone, '\\D', '', 'g'), 10) AS digits
  FROM leads l JOIN linked ON linked.id = l.id
  WHERE l.phone IS NOT NULL AND length(regexp_replace(l.phone, '\\D', '', 'g')) >= 10
), person AS (
  SELECT id FROM linked
  UNION SELECT l.id FROM leads l JOIN phones p
    ON right(regexp_replace(l.phone, '\\D', '', 'g'), 10) = p.digits
  WHERE l.phone IS NOT NULL
)"""


async def branches(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, name, timezone FROM branches ORDER BY name")


async def day(conn: asyncpg.Connection, branch_id: uuid.UUID, on: date) -> list[asyncpg.Record]:
    """The branch's appointments on a local day (the branch's own time zone)."""
    return await conn.fetch(
        """SELECT a.id, a.lead_id, l.name AS lead_name, l.phone, a.scheduled_at, a.ends_at,
                  a.status, s.name AS service_name, a.conversation_id, a.needs_attention
           FROM appointments a
           JOIN branches b ON b.id = a.branch_id
           JOIN leads l ON l.id = a.lead_id
           LEFT JOIN services s ON s.id = a.service_id
           WHERE a.branch_id = $1
             AND (a.scheduled_at AT TIME ZONE b.timezone)::date = $2
           ORDER BY a.scheduled_at""",
        branch_id, on)


async def appointment(conn: asyncpg.Connection, appointment_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT a.id, a.lead_id, a.branch_id, a.conversation_id, a.status, b.timezone
           FROM appointments a JOIN branches b ON b.id = a.branch_id WHERE a.id = $1""",
        appointment_id)


async def lead(conn: asyncpg.Connection, lead_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, channel, platform_user_id, name, phone, email, score, classification, spam,
                  interested_services, last_inbound_at, created_at FROM leads WHERE id = $1""",
        lead_id)


async def person(conn: asyncpg.Connection, lead_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every lead of the person, the given one first."""
    return await conn.fetch(
        _PERSON + """
        SELECT l.id, l.channel, l.platform_user_id, l.name, l.phone, l.score, l.classification,
               (SELECT primary_lead_id FROM lead_links WHERE lead_id = l.id) AS linked_to
        FROM leads l JOIN person p ON p.id = l.id
        ORDER BY l.id <> $1, l.created_at""", lead_id)


async def score_history(conn: asyncpg.Connection, lead_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT lead_id, signal, points, score_before, score_after, source, reason, created_at
           FROM lead_score_events WHERE lead_id = ANY($1::uuid[])
           ORDER BY created_at DESC LIMIT 200""", lead_ids)


async def appointments_of(conn: asyncpg.Connection, lead_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT a.id, a.lead_id, a.scheduled_at, a.status, b.name AS branch_name,
                  s.name AS service_name
           FROM appointments a JOIN branches b ON b.id = a.branch_id
           LEFT JOIN services s ON s.id = a.service_id
           WHERE a.lead_id = ANY($1::uuid[]) ORDER BY a.scheduled_at DESC LIMIT 100""", lead_ids)


async def link(conn: asyncpg.Connection, tenant_id: uuid.UUID, lead_id: uuid.UUID,
               into: uuid.UUID, by: uuid.UUID | None) -> None:
    """`lead_id` (and whatever was linked to it) now stands under `into`'s person."""
    primary = await conn.fetchval(
        "SELECT COALESCE((SELECT primary_lead_id FROM lead_links WHERE lead_id = $1), $1)", into)
    await conn.execute(
        "UPDATE lead_links SET primary_lead_id = $2 WHERE primary_lead_id = $1", lead_id, primary)
    await conn.execute(
        """INSERT INTO lead_links (lead_id, tenant_id, primary_lead_id, linked_by)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (lead_id) DO UPDATE SET primary_lead_id = EXCLUDED.primary_lead_id,
             linked_by = EXCLUDED.linked_by, created_at = now()""",
        lead_id, tenant_id, primary, by)


async def timezone(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> str:
    tz: str = await conn.fetchval("SELECT timezone FROM tenants WHERE id = $1", tenant_id)
    return tz


async def today(conn: asyncpg.Connection, tz: str) -> date:
    """The date now at the tenant's wall clock, by the database's clock."""
    day: date = await conn.fetchval("SELECT (now() AT TIME ZONE $1)::date", tz)
    return day


async def report(conn: asyncpg.Connection, tz: str, start: date, end: date) -> list[asyncpg.Record]:
    """Per local day and channel. First response: from a conversation's first patient message of
    the day to the first answer after it (AI or staff, not a system notice). Escalations: every
    one recorded (conversation_escalations, migration 1202), by its reason."""
    return await conn.fetch(
        """WITH days AS (
             SELECT d::date AS day FROM generate_series($2::date, $3::date, interval '1 day') d
           ), inbound AS (
             SELECT m.channel, m.conversation_id, (m.created_at AT TIME ZONE $1)::date AS day,
                    min(m.created_at) AS first_at
             FROM messages m
             WHERE m.direction = 'inbound' AND m.sender_type = 'lead'
               AND (m.created_at AT TIME ZONE $1)::date BETWEEN $2 AND $3
             GROUP BY 1, 2, 3
           ), response AS (
             SELECT i.channel, i.day,
                    extract(epoch FROM (SELECT min(o.created_at) FROM messages o
                                        WHERE o.conversation_id = i.conversation_id
                                          AND o.direction = 'outbound'
                                          AND o.sender_type IN ('ai', 'agent')
                                          AND o.created_at >= i.first_at) - i.first_at) AS seconds
             FROM inbound i
           ), answers AS (
             SELECT m.channel, (m.created_at AT TIME ZONE $1)::date AS day,
                    count(*) FILTER (WHERE m.sender_type = 'ai' AND NOT m.fallback) AS by_ai,
                    count(*) FILTER (WHERE m.sender_type = 'ai' AND m.fallback) AS by_fallback,
                    count(*) FILTER (WHERE m.sender_type = 'agent') AS by_staff
             FROM messages m
             WHERE m.direction = 'outbound' AND m.sender_type IN ('ai', 'agent')
               AND (m.created_at AT TIME ZONE $1)::date BETWEEN $2 AND $3
             GROUP BY 1, 2
           ), escalations AS (
             SELECT channel, day, jsonb_object_agg(reason, n) AS by_reason
             FROM (SELECT channel, (escalated_at AT TIME ZONE $1)::date AS day,
                          COALESCE(reason, '?') AS reason, count(*) AS n
                   FROM conversation_escalations
                   WHERE (escalated_at AT TIME ZONE $1)::date BETWEEN $2 AND $3
                   GROUP BY 1, 2, 3) e
             GROUP BY 1, 2
           ), bookings AS (
             SELECT COALESCE(c.channel, l.channel) AS channel,
                    (a.created_at AT TIME ZONE $1)::date AS day, count(*) AS booked
             FROM appointments a JOIN leads l ON l.id = a.lead_id
             LEFT JOIN conversations c ON c.id = a.conversation_id
             WHERE (a.created_at AT TIME ZONE $1)::date BETWEEN $2 AND $3
             GROUP BY 1, 2
           ), no_shows AS (
             SELECT COALESCE(c.channel, l.channel) AS channel,
                    (a.scheduled_at AT TIME ZONE $1)::date AS day, count(*) AS no_shows
             FROM appointments a JOIN leads l ON l.id = a.lead_id
             LEFT JOIN conversations c ON c.id = a.conversation_id
             WHERE a.status = 'no_show' AND (a.scheduled_at AT TIME ZONE $1)::date BETWEEN $2 AND $3
             GROUP BY 1, 2
           ), keys AS (
             SELECT channel, day FROM inbound UNION SELECT channel, day FROM answers
             UNION SELECT channel, day FROM escalations UNION SELECT channel, day FROM bookings
             UNION SELECT channel, day FROM no_shows
           )
           SELECT k.day, k.channel,
                  (SELECT count(DISTINCT conversation_id) FROM inbound i
                   WHERE i.channel = k.channel AND i.day = k.day) AS conversations,
                  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM response r
                   WHERE r.channel = k.channel AND r.day = k.day) AS first_response_p50,
                  (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) FROM response r
                   WHERE r.channel = k.channel AND r.day = k.day) AS first_response_p90,
                  COALESCE(a.by_ai, 0) AS by_ai, COALESCE(a.by_fallback, 0) AS by_fallback,
                  COALESCE(a.by_staff, 0) AS by_staff,
                  COALESCE(e.by_reason, '{}'::jsonb) AS escalations,
                  COALESCE(b.booked, 0) AS bookings, COALESCE(n.no_shows, 0) AS no_shows
           FROM keys k JOIN days USING (day)
           LEFT JOIN answers a USING (channel, day)
           LEFT JOIN escalations e USING (channel, day)
           LEFT JOIN bookings b USING (channel, day)
           LEFT JOIN no_shows n USING (channel, day)
           ORDER BY k.day, k.channel""",
        tz, start, end)
