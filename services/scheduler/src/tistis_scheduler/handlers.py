"""Entry points: the consumers (appointment requests; patients choosing an offered slot or tapping
a reminder button) and the clock loop. Each parses what arrived and calls `service`, which runs
it once per event (its processed mark, its kept events: a redelivery returns the same events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from tistis_common import metrics
from tistis_common.events import AppointmentRequested, Event, InboundMessage
from tistis_common.logging import get_logger
from tistis_common.topology import SCHEDULER_CHOICES, SCHEDULER_REQUESTS
from tistis_common.vocabulary import SLOT_PREFIX, TAP_PREFIX, parse_slot_choice, parse_tap_choice

from . import service
from .deps import Deps

log = get_logger(__name__)


async def handle_request(event: AppointmentRequested, deps: Deps) -> Sequence[Event]:
    req = service.Request(
        tenant_id=event.tenant_id, source_event_id=event.event_id,
        correlation_id=event.correlation_id or event.event_id, action=event.action,
        lead_id=event.lead_id, conversation_id=event.conversation_id,
        appointment_id=event.appointment_id, service_id=event.service_id,
        service_name=event.service_name, branch_id=event.branch_id, branch_name=event.branch_name,
        preferred=list(event.preferred_dates), exact=event.scheduled_at,
    )
    return await service.request(SCHEDULER_REQUESTS.name, event, req, deps)


async def handle_choice(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    """A list row `slot:<branch_id>:<service_id>:<iso utc>` books that slot (or moves the
    appointment the open offer was about); `appt:` is a reminder button. Every other inbound
    message is not ours."""
    if event.sender_type != "lead":
        return []
    if (event.choice_id or "").startswith(TAP_PREFIX):
        return await handle_tap(event, deps)
    if not (event.choice_id or "").startswith(SLOT_PREFIX):
        return []
    parsed = parse_slot_choice(event.choice_id or "")
    if parsed is None:
        return _unreadable(event)
    branch_id, service_id, start = parsed
    lead, offer = await service.chooser(deps, event.tenant_id, event.channel, event.platform_user_id)
    reschedule = offer is not None and offer.action == "reschedule"
    req = service.Request(
        tenant_id=event.tenant_id, source_event_id=event.event_id,
        correlation_id=event.correlation_id or event.event_id,
        action="reschedule" if reschedule else "book", lead_id=lead.id,
        appointment_id=offer.appointment_id if reschedule and offer else None,
        service_id=service_id, branch_id=branch_id, exact=start, chosen=True,
    )
    return await service.request(SCHEDULER_CHOICES.name, event, req, deps)


async def handle_tap(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    """A reminder button: reschedule and cancel go the way of any request for this appointment;
    confirm marks it confirmed and thanks the patient."""
    parsed = parse_tap_choice(event.choice_id)
    if parsed is None:
        return _unreadable(event)
    action, appointment_id = parsed
    lead, _ = await service.chooser(deps, event.tenant_id, event.channel, event.platform_user_id)
    if action == "confirm":
        return await service.confirm_tap(SCHEDULER_CHOICES.name, event, lead, appointment_id, deps)
    req = service.Request(
        tenant_id=event.tenant_id, source_event_id=event.event_id,
        correlation_id=event.correlation_id or event.event_id, action=action,
        lead_id=lead.id, appointment_id=appointment_id,
    )
    return await service.request(SCHEDULER_CHOICES.name, event, req, deps)


def _unreadable(event: InboundMessage) -> list[Event]:
    log.warning("choice.unreadable", choice_id=event.choice_id)
    metrics.BOOKINGS.labels("bad_choice").inc()
    return []


def clock_loop(deps: Deps) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A background task for Runtime.background: a pass every tick, follow-ups every interval."""
    s = deps.settings

    async def loop(stopping: asyncio.Event) -> None:
        last_followups = float("-inf")
        while not stopping.is_set():
            due = time.monotonic() - last_followups >= s.scheduler_followup_interval_seconds
            try:
                result = await service.run_pass(deps, followups=due)
            except Exception as exc:  # the tenant directory unreachable: try again next tick
                log.exception("pass.failed")
                result = service.PassResult(errors=[f"{type(exc).__name__}: {exc}"])
            if due and not result.errors:
                last_followups = time.monotonic()
            if result.reminders or result.followups or result.republished or result.errors:
                log.info("pass.done", reminders=result.reminders, followups=result.followups,
                         republished=result.republished, errors=len(result.errors))
            try:
                await asyncio.wait_for(stopping.wait(), timeout=s.scheduler_tick_seconds)
            except TimeoutError:
                pass

    return loop
