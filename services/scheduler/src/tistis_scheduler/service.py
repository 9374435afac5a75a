"""The scheduler's decisions.

- Requests (`request`): book, reschedule or cancel one appointment, or record how it went, in
  one tenant transaction with the consumer's processed mark and its kept events.
  Capacity: candidate slots are computed from opening hours; then an advisory lock per
  (branch, local day) is taken for every day a candidate touches (sorted, so no deadlock), the
  claims are read under it and the first candidate with a free chair in every cell is claimed.
  The claim table's unique key and capacity trigger hold even for a writer that skips the lock.
- Reminder buttons (`confirm_tap`): confirm marks the appointment confirmed and thanks the
  patient (reschedule and cancel are requests).
- The clock (`run_pass`): each pass visits every tenant in its own scope and sends due reminders
  (`remind`), follow-ups (`follow_up`, less often) and whatever a crash left unpublished.
  A pass commits its decisions with their events kept unpublished, publishes after the commit,
  then marks them published; a crash in between leaves them for a later pass (after a grace
  period, so that a pass in flight on another replica is not raced), and downstream drops
  duplicates by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from tistis_common import idempotency, metrics
from tistis_common.broker import PermanentError
from tistis_common.db import tenant_ids, tenant_tx
from tistis_common.events import Channel, Event, LeadScoreSet
from tistis_common.ids import stable_id
from tistis_common.logging import bound, get_logger
from tistis_common.retention import expire_media
from tistis_common.vocabulary import TAP_ACTIONS, TapAction, Template, tap_choice_id

from . import notices, outbound
from . import repository as repo
from .availability import Branch, Slot, candidates, cells, free_chair, next_free
from .catalog import Service, resolve_branches, resolve_service
from .deps import Deps
from .outbound import Recipient
from .spanish import fecha, hora

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)

Action = Literal["book", "reschedule", "cancel", "complete", "no_show"]
OUTCOME_STATUS = {"complete": "completed", "no_show": "no_show"}
NOT_FOUND_TEXT = "No encontramos una cita activa a tu nombre. ¿Quieres agendar una nueva?"

PASSES = "scheduler"  # the outbox consumer of the passes' own events (no consumed event)
# Instagram, Messenger and TikTok: a reminder or a follow-up is an ordinary message, allowed only
# inside the window the patient's last message opened (no templates; Meta's message tags are
# deprecated).
WINDOW = timedelta(hours=24)
BATCH = 100


@dataclass(frozen=True)
class Request:
    tenant_id: uuid.UUID
    source_event_id: uuid.UUID  # the consumed event: ids of what it creates derive from it
    correlation_id: uuid.UUID | None
    action: Action
    lead_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    appointment_id: uuid.UUID | None = None
    service_id: uuid.UUID | None = None
    service_name: str | None = None
    branch_id: uuid.UUID | None = None
    branch_name: str | None = None
    preferred: list[str] = field(default_factory=list)
    exact: datetime | None = None  # legacy callback's scheduled_at, or a chosen slot
    chosen: bool = False  # a patient picked an offered row


@dataclass
class Outcome:
    name: str  # BOOKINGS label: booked | rescheduled | cancelled | offered | no_availability | ...
    events: Sequence[Event] = ()
    appointment_id: uuid.UUID | None = None


class LeadNotStoredYet(Exception):
    """The choice arrived before the lead's row (retried: the AI responder stores it)."""


# ------------------------------------------------------------------ consumers


async def request(consumer: str, event: Event, req: Request, deps: Deps) -> Sequence[Event]:
    """One request, once: a redelivery returns the events its first delivery kept."""
    async with tenant_tx(deps.pool, req.tenant_id) as conn:
        if not await idempotency.first_delivery(conn, consumer, event):
            log.info("request.duplicate")
            return await idempotency.kept(conn, consumer, event.event_id)
        outcome = await _process(conn, req, deps)
        await idempotency.keep(conn, consumer, event.event_id, outcome.events, now=deps.now())
    metrics.BOOKINGS.labels(outcome.name).inc()
    log.info("request.handled", outcome=outcome.name, action=req.action,
             appointment_id=str(outcome.appointment_id) if outcome.appointment_id else None)
    return outcome.events


async def chooser(deps: Deps, tenant_id: uuid.UUID, channel: Channel,
                  platform_user_id: str) -> tuple[repo.Lead, repo.Offer | None]:
    """The lead who tapped, and its open offer (what a chosen slot books or moves)."""
    async with tenant_tx(deps.pool, tenant_id) as conn:
        lead = await repo.lead_by_platform(conn, channel.value, platform_user_id)
        offer = await repo.open_offer(conn, lead.id) if lead else None
    if lead is None:
        raise LeadNotStoredYet(platform_user_id)
    return lead, offer


async def confirm_tap(consumer: str, event: Event, lead: repo.Lead, appointment_id: uuid.UUID,
                      deps: Deps) -> Sequence[Event]:
    """A reminder's confirm button: the appointment is confirmed and the patient thanked."""
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        if not await idempotency.first_delivery(conn, consumer, event):
            return await idempotency.kept(conn, consumer, event.event_id)
        now = deps.now()
        current = await repo.appointment(conn, appointment_id)
        to = await outbound.recipient(conn, event.tenant_id, lead, None)
        origin = notices.Origin(now, event.correlation_id or event.event_id, event.event_id)
        if current is None or current.status != "booked" or current.lead_id != lead.id:
            text = NOT_FOUND_TEXT
            outcome = "not_found"
        else:
            await repo.confirm_appointment(conn, appointment_id, now)
            branch = next(b for b in await repo.branches(conn) if b.id == current.branch_id)
            text = notices.confirmed_text(current.scheduled_at, branch)
            outcome = "confirmed"
        events: list[Event] = []
        if to:
            events.append(await notices.plain(conn, to, key=(outcome, appointment_id, event.event_id),
                                              text=text, origin=origin))
        await idempotency.keep(conn, consumer, event.event_id, events, now=now)
    metrics.BOOKINGS.labels(outcome).inc()
    log.info("request.handled", outcome=outcome, action="confirm", appointment_id=str(appointment_id))
    return events


# ------------------------------------------------------------------ a request, in its transaction


async def _claim_first(conn: asyncpg.Connection, tenant_id: uuid.UUID, slots: list[Slot],
                       branches: dict[uuid.UUID, Branch], appointment_id: uuid.UUID,
                       moving: uuid.UUID | None) -> Slot | None:
    if not slots:
        return None
    await repo.lock_branch_days(
        conn, [(s.branch_id, s.start.astimezone(branches[s.branch_id].timezone).date()) for s in slots])
    span = [c for s in slots for c in cells(s.start, s.end)]
    taken = await repo.claims(conn, list({s.branch_id for s in slots}), min(span),
                              max(span) + timedelta(minutes=15), exclude=moving)
    for slot in slots:
        capacity = branches[slot.branch_id].capacity
        chairs = free_chair(taken[slot.branch_id], cells(slot.start, slot.end), capacity)
        if chairs is not None:
            if moving:
                await repo.release_claims(conn, moving)
            await repo.add_claims(conn, tenant_id, slot.branch_id, appointment_id, chairs)
            return slot
    return None


async def _process(conn: asyncpg.Connection, req: Request, deps: Deps) -> Outcome:
    s = deps.settings
    now = deps.now()
    lead = await repo.lead(conn, req.lead_id)
    if lead is None:
        raise PermanentError(f"lead {req.lead_id} not found")
    to = await outbound.recipient(conn, req.tenant_id, lead, req.conversation_id)
    all_branches = await repo.branches(conn)
    if not all_branches:
        raise PermanentError("the clinic has no branches")
    by_id = {b.id: b for b in all_branches}
    origin = notices.Origin(now, req.correlation_id, req.source_event_id)

    if req.action in ("complete", "no_show"):
        name, events = await _record_outcome(conn, req, deps, to, by_id, origin)
        return Outcome(name, events, req.appointment_id)
    current = None
    if req.action in ("reschedule", "cancel"):
        current = (await repo.appointment(conn, req.appointment_id) if req.appointment_id
                   else await repo.next_booked(conn, req.lead_id, now))
        if current is None or current.status != "booked" or current.lead_id != req.lead_id:
            events = []
            if to:
                events.append(await notices.plain(
                    conn, to, key=("not-found", req.source_event_id), text=NOT_FOUND_TEXT,
                    origin=origin))
            return Outcome("not_found", events)
    if req.action == "cancel":
        assert current is not None
        await repo.cancel_appointment(conn, current.id, now)
        await repo.release_claims(conn, current.id)
        # The branch sees it among the appointments that need attention.
        await repo.flag_appointment(conn, current.id, "cancelled by the patient", now)
        events = []
        if to:
            text = notices.cancelled_text(current.scheduled_at, by_id[current.branch_id])
            events.append(await notices.plain(conn, to, key=("cancelled", current.id), text=text,
                                              origin=origin))
        return Outcome("cancelled", events, current.id)

    service = resolve_service(await repo.services(conn),
                              req.service_id or (current.service_id if current else None),
                              req.service_name)
    branches = resolve_branches(all_branches, req.branch_id or (current.branch_id if current else None),
                                req.branch_name)
    earliest = now + timedelta(minutes=s.scheduler_min_notice_minutes)
    step = timedelta(minutes=s.scheduler_slot_step_minutes)
    wanted = candidates(branches, service.duration, step, earliest, req.preferred, req.exact)

    if req.action == "book" and req.exact is not None:
        # The same choice (or the same legacy callback) twice books once.
        for wish in wanted:
            existing = await repo.booked_at(conn, req.lead_id, wish.branch_id, wish.start)
            if existing:
                return Outcome("duplicate", [], existing)

    appointment_id = current.id if current else stable_id("appointment", req.source_event_id)
    if req.action == "book" and wanted:
        # Inserted first so that claims can reference it; removed again if nothing fits.
        first = wanted[0]
        await repo.insert_appointment(
            conn, id=appointment_id, tenant_id=req.tenant_id, lead_id=req.lead_id,
            branch_id=first.branch_id, service_id=service.id,
            conversation_id=to.conversation_id if to else None,
            start=first.start, end=first.end, request_event_id=req.source_event_id, now=now,
        )
    slot = await _claim_first(conn, req.tenant_id, wanted, by_id, appointment_id,
                              current.id if current else None)
    if slot is None:
        if req.action == "book" and wanted:
            await repo.delete_appointment(conn, appointment_id)
        return await _offer(conn, req, deps, to, branches, by_id, service, earliest, step,
                            current.id if current else None, taken_slot=bool(wanted))

    await repo.move_appointment(conn, appointment_id, slot.branch_id, service.id, slot.start, slot.end, now)
    await repo.consume_offers(conn, req.lead_id, now)
    events = []
    if to:
        events.append(await notices.confirmation(
            conn, to, appointment_id=appointment_id, slot=slot, branch=by_id[slot.branch_id],
            service_name=service.name, rescheduled=req.action == "reschedule", origin=origin))
    else:
        await repo.flag_appointment(conn, appointment_id, "no conversation to send the confirmation", now)
    log.info("appointment.booked", appointment_id=str(appointment_id), action=req.action,
             branch_id=str(slot.branch_id), scheduled_at=slot.start.isoformat())
    return Outcome("rescheduled" if req.action == "reschedule" else "booked", events, appointment_id)


async def _offer(conn: asyncpg.Connection, req: Request, deps: Deps, to: Recipient | None,
                 branches: list[Branch], by_id: dict[uuid.UUID, Branch], service: Service,
                 earliest: datetime, step: timedelta, moving: uuid.UUID | None,
                 taken_slot: bool) -> Outcome:
    s = deps.settings
    now = deps.now()
    horizon = earliest + timedelta(days=s.scheduler_search_days + 1)
    taken = await repo.claims(conn, [b.id for b in branches], earliest - timedelta(days=1), horizon,
                              exclude=moving)
    slots = next_free(branches, service.duration, step, earliest, s.scheduler_search_days, taken,
                      min(s.scheduler_offer_count, notices.MAX_ROWS))
    origin = notices.Origin(now, req.correlation_id, req.source_event_id)
    if not to:
        return Outcome("unreachable")
    if not slots:
        text = ("Por ahora no tenemos horarios disponibles en las próximas semanas. "
                "Un miembro del equipo te contactará para encontrar una opción.")
        message = await notices.plain(conn, to, key=("none-free", req.source_event_id), text=text,
                                      origin=origin)
        return Outcome("no_availability", [message])
    await repo.add_offer(conn, id=stable_id("offer", req.source_event_id), tenant_id=req.tenant_id,
                         lead_id=req.lead_id, action="reschedule" if moving else "book",
                         appointment_id=moving, request_event_id=req.source_event_id, now=now)
    if req.chosen:
        intro = "Ese horario ya no está disponible."
    elif taken_slot or req.preferred or req.exact:
        intro = "No tenemos disponible el horario que pediste."
    else:
        intro = "¡Con gusto te agendamos!"
    event = await notices.offer(conn, to, slots=slots, branches=by_id, service_id=service.id,
                                service_name=service.name, intro=intro, origin=origin)
    return Outcome("offered", [event])


async def _record_outcome(conn: asyncpg.Connection, req: Request, deps: Deps, to: Recipient | None,
                          branches: dict[uuid.UUID, Branch],
                          origin: notices.Origin) -> tuple[str, list[Event]]:
    """Staff record how an appointment went: `completed` or `no_show` (operator API, CLI). A
    no-show gets a follow-up at once (`seguimiento` on WhatsApp, text elsewhere; the dispatcher
    keeps it from leads who opted out and outside the channels' windows), when the setting allows."""
    if req.appointment_id is None:
        raise PermanentError(f"{req.action} needs the appointment id")
    current = await repo.appointment(conn, req.appointment_id)
    if current is None or current.lead_id != req.lead_id:
        raise PermanentError(f"appointment {req.appointment_id} not found for lead {req.lead_id}")
    status = OUTCOME_STATUS[req.action]
    if current.status == status:
        return "unchanged", []
    if current.status not in ("booked", "completed", "no_show"):
        raise PermanentError(f"appointment {current.id} is {current.status}")
    await repo.set_appointment_status(conn, current.id, status, origin.now)
    events: list[Event] = []
    opted_out = await repo.opted_out(conn, req.lead_id)
    if (status == "no_show" and deps.settings.scheduler_no_show_followup and to is not None
            and not opted_out):  # a patient who opted out gets no follow-up, not even queued
        template = (outbound.template(Template.SEGUIMIENTO, to.display_name)
                    if to.channel is Channel.WHATSAPP else None)
        events.append(await outbound.queue(
            conn, to, key=("no-show", current.id), purpose="followup",
            text=notices.no_show_text(to.display_name, current.scheduled_at,
                                      branches[current.branch_id]),
            template=template, now=origin.now, correlation_id=origin.correlation_id))
    log.info("appointment.outcome", appointment_id=str(current.id), status=status)
    return status, events


# ------------------------------------------------------------------ the clock's steps


async def remind(conn: asyncpg.Connection, tenant_id: uuid.UUID, deps: Deps) -> list[Event]:
    """Reminders 24 h before each appointment, exactly once across replicas: one batch of due
    reminders for one tenant, in the caller's transaction.

    Due rows are claimed with FOR UPDATE SKIP LOCKED; the message, its kept event and
    `reminder_sent` commit together, so a second replica either skips the locked row or finds it
    sent. A reminder missed while the service was down goes out on the next pass only while the
    appointment is still ahead. Appointments booked less than 24 h ahead get none: their
    confirmation said the same moments before."""
    now = deps.now()
    ahead = timedelta(hours=deps.settings.scheduler_reminder_hours)
    events: list[Event] = []
    due = await repo.due_reminders(conn, now, ahead, WINDOW, BATCH)
    declared = await repo.template_buttons(conn, Template.RECORDATORIO_CITA) if due else []
    for row in due:
        branch = row.branch
        conv = await repo.conversation(conn, row.lead_id, row.conversation_id)
        if conv is None:
            reason = "reminder not sent: no conversation with the patient"
            if await repo.flag_appointment(conn, row.id, reason, now):
                metrics.REMINDERS.labels("flagged").inc()
            continue
        to = Recipient(tenant_id, row.lead_id, conv.id, Channel(conv.channel),
                       row.platform_user_id, row.name)
        text = notices.reminder_text(to.display_name, row.scheduled_at, branch)
        template = None
        buttons = None
        if to.channel is Channel.WHATSAPP:
            at = row.scheduled_at.astimezone(branch.timezone)
            template = outbound.template(Template.RECORDATORIO_CITA, to.display_name, fecha(at),
                                         hora(at), branch.name).model_copy(update={
                "button_payloads": [tap_choice_id(a, row.id) for a in _declared_taps(declared)]})
        elif conv.last_inbound_at is None or now - conv.last_inbound_at >= WINDOW:
            reason = f"reminder not sent: the {to.channel.value} 24 h messaging window is closed"
            if await repo.flag_appointment(conn, row.id, reason, now):
                metrics.REMINDERS.labels("flagged").inc()
                log.info("reminder.flagged", appointment_id=str(row.id), channel=to.channel.value)
            continue
        elif to.channel in notices.QUICK_REPLY_CHANNELS:
            buttons = notices.tap_buttons(row.id)
        events.append(await outbound.queue(
            conn, to, key=("reminder", row.id, row.scheduled_at.isoformat()), purpose="reminder",
            text=text, template=template, quick_replies=buttons, now=now, correlation_id=None,
        ))
        await repo.finish_reminder(conn, row.id, now)
        metrics.REMINDERS.labels("sent").inc()
        metrics.REMINDER_LAG_SECONDS.observe(max(0.0, (now - (row.scheduled_at - ahead)).total_seconds()))
        log.info("reminder.queued", appointment_id=str(row.id), channel=to.channel.value)
    return events


def _declared_taps(declared: list[str]) -> list[TapAction]:
    """The tenant template's buttons that are tap actions, in the template's order."""
    return [a for b in declared for a in TAP_ACTIONS if a == b]


def since_key(last_inbound: datetime | None) -> str:
    """Names one silence: the patient's last message (as PostgreSQL prints it), or never."""
    return "never" if last_inbound is None else last_inbound.isoformat()


async def follow_up(conn: asyncpg.Connection, tenant_id: uuid.UUID, deps: Deps) -> list[Event]:
    """Follow-ups: a lead whose last message from us is newer than the patient's last message and
    older than 48 h gets `seguimiento`; after 3 unanswered ones it is marked COLD (a LeadScoreSet
    for the scorer, which owns the score) and left alone. The count is of follow-ups since the
    patient's last message, so any reply starts the ladder again (`repo.silences` says who)."""
    s = deps.settings
    now = deps.now()
    await repo.mark_answered_followups(conn)
    events: list[Event] = []
    for row in await repo.silences(conn, now, timedelta(hours=s.scheduler_followup_after_hours), BATCH):
        since = row.last_in
        if row.unanswered >= s.scheduler_followup_max:
            score = min(row.score, s.scheduler_followup_cold_score, 39)
            event = LeadScoreSet(
                event_id=stable_id("followup-cold", tenant_id, row.lead_id, since_key(since)),
                tenant_id=tenant_id, occurred_at=now, lead_id=row.lead_id, score=score,
                source="followup",
                reason=f"{row.unanswered} follow-ups unanswered since the last message",
            )
            if not await repo.mark_cold(conn, tenant_id, row.lead_id, since, event.event_id, now):
                continue  # left alone: already COLD for this silence
            events.append(event)
            metrics.FOLLOWUPS.labels("cold").inc()
            log.info("followup.cold", lead_id=str(row.lead_id), score=score)
            continue
        channel = Channel(row.channel)
        # Outside WhatsApp (templates) a follow-up is an ordinary message: only inside the window.
        if channel is not Channel.WHATSAPP and (since is None or now - since >= WINDOW):
            metrics.FOLLOWUPS.labels("window_closed").inc()
            continue
        attempt = row.unanswered + 1
        to = Recipient(tenant_id, row.lead_id, row.conversation_id, channel,
                       row.platform_user_id, row.name)
        key = ("followup", row.lead_id, since_key(since), attempt)
        # The ladder step is claimed by its deterministic id: a replica that read the same lead
        # before this commit computes the same step, conflicts here and sends nothing.
        if not await repo.claim_followup(
                conn, id=stable_id("followup", tenant_id, *key), tenant_id=tenant_id,
                lead_id=row.lead_id, attempt=attempt,
                message_id=outbound.message_id_for(tenant_id, key), now=now):
            continue
        message = await outbound.queue(
            conn, to, key=key, purpose="followup", text=notices.followup_text(to.display_name),
            template=outbound.template(Template.SEGUIMIENTO, to.display_name)
            if channel is Channel.WHATSAPP else None,
            now=now, correlation_id=None,
        )
        events.append(message)
        metrics.FOLLOWUPS.labels("sent").inc()
        log.info("followup.queued", lead_id=str(row.lead_id), attempt=attempt, channel=channel.value)
    return events


# ------------------------------------------------------------------ a pass over every tenant

Step = Callable[["asyncpg.Connection", uuid.UUID, Deps], Awaitable[list[Event]]]


@dataclass
class PassResult:
    reminders: int = 0
    followups: int = 0  # follow-up messages and COLD marks
    republished: int = 0
    media_deleted: int = 0  # patient files past their tenant's retention (with follow-ups)
    errors: list[str] = field(default_factory=list)


async def _publish(deps: Deps, tenant_id: uuid.UUID, events: list[Event]) -> None:
    if not events:
        return
    await deps.publisher.publish_all(events)
    async with tenant_tx(deps.pool, tenant_id) as conn:
        await idempotency.mark_published(conn, events, deps.now())


async def decide(deps: Deps, tenant_id: uuid.UUID, step: Step) -> list[Event]:
    """One step's decisions committed with their events kept unpublished (not yet published)."""
    async with tenant_tx(deps.pool, tenant_id) as conn:
        events = await step(conn, tenant_id, deps)
        await idempotency.keep(conn, PASSES, None, events, now=deps.now(), published=False)
    return events


async def _step(deps: Deps, tenant_id: uuid.UUID, step: Step) -> int:
    events = await decide(deps, tenant_id, step)
    await _publish(deps, tenant_id, events)
    return len(events)


async def republish(deps: Deps, tenant_id: uuid.UUID) -> int:
    grace = timedelta(seconds=deps.settings.scheduler_outbox_grace_seconds)
    async with tenant_tx(deps.pool, tenant_id) as conn:
        events = await idempotency.unpublished(conn, PASSES, deps.now() - grace)
        if events:
            await deps.publisher.publish_all(events)  # under the row locks: one replica at a time
            await idempotency.mark_published(conn, events, deps.now())
            log.warning("outbox.republished", count=len(events))
    return len(events)


async def run_pass(deps: Deps, *, followups: bool = True) -> PassResult:
    """One pass over every tenant; a failing tenant does not stop the others."""
    result = PassResult()
    for tenant_id in await tenant_ids(deps.pool):
        with bound(tenant_id=str(tenant_id)):
            try:
                result.republished += await republish(deps, tenant_id)
                result.reminders += await _step(deps, tenant_id, remind)
                if followups:
                    result.followups += await _step(deps, tenant_id, follow_up)
                    if deps.store is not None:
                        result.media_deleted += await expire_media(
                            deps.pool, deps.store, tenant_id, deps.now(),
                            deps.settings.media_retention_days)
            except Exception as exc:
                log.exception("pass.tenant_failed")
                result.errors.append(f"{tenant_id}: {type(exc).__name__}: {exc}")
    return result
