"""Reminders 24 h before each appointment, exactly once across replicas.

Due rows are claimed with FOR UPDATE SKIP LOCKED; the message, its outbox event and
`reminder_sent` commit together, so a second replica either skips the locked row or finds it
sent. A reminder missed while the service was down goes out on the next pass only while the
appointment is still ahead. Appointments booked less than 24 h ahead get none: their
confirmation said the same moments before."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from tistis_common import metrics
from tistis_common.events import Channel, Event
from tistis_common.logging import get_logger

from . import notices, outbound, taps
from . import repository as repo
from .availability import Branch
from .deps import Deps
from .outbound import Recipient
from .spanish import fecha, hora

log = get_logger(__name__)

# Instagram, Messenger and TikTok: a reminder is an ordinary message, allowed only inside the
# window the patient's last message opened (no templates; Meta's message tags are deprecated).
WINDOW = timedelta(hours=24)
BATCH = 100


async def _due(conn: asyncpg.Connection, now: datetime, ahead: timedelta) -> list[asyncpg.Record]:
    return await conn.fetch(
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
        now, ahead, BATCH, WINDOW,
    )


async def _mark_sent(conn: asyncpg.Connection, appointment_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        """UPDATE appointments SET reminder_sent = true, reminder_sent_at = $2, updated_at = $2,
             needs_attention = needs_attention
                               AND COALESCE(attention_reason, '') NOT LIKE 'reminder not sent%'
           WHERE id = $1""",
        appointment_id, now,
    )


async def remind(conn: asyncpg.Connection, tenant_id: uuid.UUID, deps: Deps) -> list[Event]:
    """One batch of due reminders for one tenant, in the caller's transaction."""
    now = deps.now()
    ahead = timedelta(hours=deps.settings.scheduler_reminder_hours)
    events: list[Event] = []
    due = await _due(conn, now, ahead)
    declared = await repo.template_buttons(conn, taps.REMINDER_TEMPLATE) if due else []
    for row in due:
        branch = Branch(row["branch_id"], row["branch_name"], row["address"], ZoneInfo(row["timezone"]), {})
        conv = await repo.conversation(conn, row["lead_id"], row["conversation_id"])
        if conv is None:
            reason = "reminder not sent: no conversation with the patient"
            if await repo.flag_appointment(conn, row["id"], reason, now):
                metrics.REMINDERS.labels("flagged").inc()
            continue
        to = Recipient(tenant_id, row["lead_id"], conv["id"], Channel(conv["channel"]),
                       row["platform_user_id"], row["name"])
        text = notices.reminder_text(to.display_name, row["scheduled_at"], branch)
        template = None
        buttons = None
        if to.channel is Channel.WHATSAPP:
            at = row["scheduled_at"].astimezone(branch.timezone)
            template = outbound.template(taps.REMINDER_TEMPLATE, to.display_name, fecha(at),
                                         hora(at), branch.name).model_copy(update={
                "button_payloads": [taps.payload(b, row["id"]) for b in declared
                                    if b in taps.ACTIONS]})
        elif conv["last_inbound_at"] is None or now - conv["last_inbound_at"] >= WINDOW:
            reason = f"reminder not sent: the {to.channel.value} 24 h messaging window is closed"
            if await repo.flag_appointment(conn, row["id"], reason, now):
                metrics.REMINDERS.labels("flagged").inc()
                log.info("reminder.flagged", appointment_id=str(row["id"]), channel=to.channel.value)
            continue
        elif to.channel in notices.QUICK_REPLY_CHANNELS:
            buttons = taps.quick_replies(row["id"])
        events.append(await outbound.queue(
            conn, to, key=("reminder", row["id"], row["scheduled_at"].isoformat()), purpose="reminder",
            text=text, template=template, quick_replies=buttons, now=now, correlation_id=None,
            source_event_id=None,
        ))
        await _mark_sent(conn, row["id"], now)
        metrics.REMINDERS.labels("sent").inc()
        metrics.REMINDER_LAG_SECONDS.observe(max(0.0, (now - (row["scheduled_at"] - ahead)).total_seconds()))
        log.info("reminder.queued", appointment_id=str(row["id"]), channel=to.channel.value)
    return events
