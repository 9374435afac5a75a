"""Follow-ups: a lead whose last message from us is newer than the patient's last message and
older than 48 h gets `seguimiento`; after 3 unanswered ones it is marked COLD (a LeadScoreSet
for the scorer, which owns the score) and left alone. The count is of follow-ups since the
patient's last message, so any reply starts the ladder again. Spam, not-interested and
opted-out leads, conversations staff handle, and leads with an appointment ahead are skipped."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
from tistis_common import metrics
from tistis_common.events import Channel, Event, LeadScoreSet
from tistis_common.ids import stable_id
from tistis_common.logging import get_logger

from . import notices, outbound
from .deps import Deps
from .outbound import Recipient

log = get_logger(__name__)

# Outside WhatsApp (templates) a follow-up is an ordinary message: only inside the window.
WINDOW = timedelta(hours=24)
BATCH = 100


def since_key(last_inbound: datetime | None) -> str:
    """Names one silence: the patient's last message (as PostgreSQL prints it), or never."""
    return "never" if last_inbound is None else last_inbound.isoformat()


async def _candidates(conn: asyncpg.Connection, now: datetime, silence: timedelta) -> list[asyncpg.Record]:
    return await conn.fetch(
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
        now, silence, BATCH,
    )


async def _answered(conn: asyncpg.Connection) -> None:
    """Follow-ups the patient answered since (kept for reporting; the count does not need it)."""
    await conn.execute(
        """UPDATE followups f SET answered_at = GREATEST(c.last_inbound_at, l.last_inbound_at)
           FROM leads l JOIN conversations c ON c.lead_id = l.id AND c.channel = l.channel
           WHERE f.lead_id = l.id AND f.answered_at IS NULL
             AND GREATEST(c.last_inbound_at, l.last_inbound_at) > f.sent_at"""
    )


async def follow_up(conn: asyncpg.Connection, tenant_id: uuid.UUID, deps: Deps) -> list[Event]:
    s = deps.settings
    now = deps.now()
    await _answered(conn)
    events: list[Event] = []
    for row in await _candidates(conn, now, timedelta(hours=s.scheduler_followup_after_hours)):
        since = row["last_in"]
        if row["unanswered"] >= s.scheduler_followup_max:
            score = min(row["score"], s.scheduler_followup_cold_score, 39)
            event = LeadScoreSet(
                event_id=stable_id("followup-cold", tenant_id, row["lead_id"], since_key(since)),
                tenant_id=tenant_id, occurred_at=now, lead_id=row["lead_id"], score=score,
                source="followup",
                reason=f"{row['unanswered']} follow-ups unanswered since the last message",
            )
            marked = await conn.fetchval(
                """INSERT INTO lead_cold_marks (tenant_id, lead_id, since_inbound, event_id, marked_at)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
                tenant_id, row["lead_id"], since, event.event_id, now,
            )
            if not marked:  # left alone: already COLD for this silence
                continue
            events.append(event)
            metrics.FOLLOWUPS.labels("cold").inc()
            log.info("followup.cold", lead_id=str(row["lead_id"]), score=score)
            continue
        channel = Channel(row["channel"])
        if channel is not Channel.WHATSAPP and (since is None or now - since >= WINDOW):
            metrics.FOLLOWUPS.labels("window_closed").inc()
            continue
        attempt = row["unanswered"] + 1
        to = Recipient(tenant_id, row["lead_id"], row["conversation_id"], channel,
                       row["platform_user_id"], row["name"])
        key = ("followup", row["lead_id"], since_key(since), attempt)
        # The ladder step is claimed by its deterministic id: a replica that read the same lead
        # before this commit computes the same step, conflicts here and sends nothing.
        claimed = await conn.fetchval(
            """INSERT INTO followups (id, tenant_id, lead_id, attempt, message_id, sent_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
            stable_id("followup", tenant_id, *key), tenant_id, row["lead_id"], attempt,
            outbound.message_id_for(tenant_id, key), now,
        )
        if not claimed:
            continue
        message = await outbound.queue(
            conn, to, key=key, purpose="followup", text=notices.followup_text(to.display_name),
            template=outbound.template("seguimiento", to.display_name)
            if channel is Channel.WHATSAPP else None,
            now=now, correlation_id=None, source_event_id=None,
        )
        events.append(message)
        metrics.FOLLOWUPS.labels("sent").inc()
        log.info("followup.queued", lead_id=str(row["lead_id"]), attempt=attempt, channel=channel.value)
    return events
