"""Consumer handlers: appointment requests, and patients choosing an offered slot.

Each runs in one tenant transaction with its idempotency mark; the events it decides are kept in
the outbox with it, so a redelivery returns exactly the same events (the runner republishes,
downstream drops duplicates by id)."""

from __future__ import annotations

from collections.abc import Sequence

from tistis_common import idempotency, metrics
from tistis_common.db import tenant_tx
from tistis_common.events import AppointmentRequested, Event, InboundMessage
from tistis_common.logging import get_logger
from tistis_common.topology import SCHEDULER_CHOICES, SCHEDULER_REQUESTS

from . import booking, notices, taps
from . import repository as repo
from .deps import Deps
from .notices import parse_slot_choice
from .outbound import recipient

log = get_logger(__name__)

SLOT_PREFIX = "slot:"


class LeadNotStoredYet(Exception):
    """The choice arrived before the lead's row (retried: the AI responder stores it)."""


async def _run(consumer: str, event: Event, req: booking.Request, deps: Deps) -> Sequence[Event]:
    async with tenant_tx(deps.pool, req.tenant_id) as conn:
        if not await idempotency.first_delivery(conn, consumer, event):
            log.info("request.duplicate")
            return await idempotency.kept(conn, consumer, event.event_id)
        outcome = await booking.process(conn, req, deps)
        await idempotency.keep(conn, consumer, event.event_id, outcome.events, now=deps.now())
    metrics.BOOKINGS.labels(outcome.name).inc()
    log.info("request.handled", outcome=outcome.name, action=req.action,
             appointment_id=str(outcome.appointment_id) if outcome.appointment_id else None)
    return outcome.events


async def handle_request(event: AppointmentRequested, deps: Deps) -> Sequence[Event]:
    if not isinstance(event, AppointmentRequested):
        return []
    req = booking.Request(
        tenant_id=event.tenant_id, source_event_id=event.event_id,
        correlation_id=event.correlation_id or event.event_id, action=event.action,
        lead_id=event.lead_id, conversation_id=event.conversation_id,
        appointment_id=event.appointment_id, service_id=event.service_id,
        service_name=event.service_name, branch_id=event.branch_id, branch_name=event.branch_name,
        preferred=list(event.preferred_dates), exact=event.scheduled_at,
    )
    return await _run(SCHEDULER_REQUESTS.name, event, req, deps)


async def handle_choice(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    """A list row `slot:<branch_id>:<service_id>:<iso utc>` books that slot (or moves the
    appointment the open offer was about). Every other inbound message is not ours."""
    if not isinstance(event, InboundMessage) or event.sender_type != "lead":
        return []
    if (event.choice_id or "").startswith(taps.PREFIX):
        return await handle_tap(event, deps)
    if not (event.choice_id or "").startswith(SLOT_PREFIX):
        return []
    parsed = parse_slot_choice(event.choice_id or "")
    if parsed is None:
        log.warning("choice.unreadable", choice_id=event.choice_id)
        metrics.BOOKINGS.labels("bad_choice").inc()
        return []
    branch_id, service_id, start = parsed
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        lead = await repo.lead_by_platform(conn, event.channel.value, event.platform_user_id)
        offer = await repo.open_offer(conn, lead["id"]) if lead else None
    if lead is None:
        raise LeadNotStoredYet(event.platform_user_id)
    reschedule = offer is not None and offer["action"] == "reschedule"
    req = booking.Request(
        tenant_id=event.tenant_id, source_event_id=event.event_id,
        correlation_id=event.correlation_id or event.event_id,
        action="reschedule" if reschedule else "book", lead_id=lead["id"],
        appointment_id=offer["appointment_id"] if reschedule and offer else None,
        service_id=service_id, branch_id=branch_id, exact=start, chosen=True,
    )
    return await _run(SCHEDULER_CHOICES.name, event, req, deps)


async def handle_tap(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    """A reminder button: reschedule and cancel go the way of any request for this appointment;
    confirm marks it confirmed and thanks the patient."""
    parsed = taps.parse(event.choice_id)
    if parsed is None:
        log.warning("choice.unreadable", choice_id=event.choice_id)
        metrics.BOOKINGS.labels("bad_choice").inc()
        return []
    action, appointment_id = parsed
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        lead = await repo.lead_by_platform(conn, event.channel.value, event.platform_user_id)
    if lead is None:
        raise LeadNotStoredYet(event.platform_user_id)
    if action != "confirm":
        req = booking.Request(
            tenant_id=event.tenant_id, source_event_id=event.event_id,
            correlation_id=event.correlation_id or event.event_id, action=action,
            lead_id=lead["id"], appointment_id=appointment_id,
        )
        return await _run(SCHEDULER_CHOICES.name, event, req, deps)
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        if not await idempotency.first_delivery(conn, SCHEDULER_CHOICES.name, event):
            return await idempotency.kept(conn, SCHEDULER_CHOICES.name, event.event_id)
        now = deps.now()
        current = await repo.appointment(conn, appointment_id)
        to, _ = await recipient(conn, event.tenant_id, lead, None)
        ctx: notices.Ctx = {"now": now, "correlation_id": event.correlation_id or event.event_id,
                            "source_event_id": event.event_id}
        if current is None or current["status"] != "booked" or current["lead_id"] != lead["id"]:
            text = "No encontramos una cita activa a tu nombre. ¿Quieres agendar una nueva?"
            outcome = "not_found"
        else:
            await repo.confirm_appointment(conn, appointment_id, now)
            branch = next(b for b in await repo.branches(conn) if b.id == current["branch_id"])
            text = notices.confirmed_text(current["scheduled_at"], branch)
            outcome = "confirmed"
        events: list[Event] = []
        if to:
            events.append(await notices.plain(conn, to, key=(outcome, appointment_id, event.event_id),
                                              text=text, **ctx))
        await idempotency.keep(conn, SCHEDULER_CHOICES.name, event.event_id, events, now=now)
    metrics.BOOKINGS.labels(outcome).inc()
    log.info("request.handled", outcome=outcome, action="confirm", appointment_id=str(appointment_id))
    return events
