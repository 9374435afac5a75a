"""Book, reschedule or cancel one appointment request, in the caller's transaction.

Capacity: candidate slots are computed from opening hours; then an advisory lock per
(branch, local day) is taken for every day a candidate touches (sorted, so no deadlock), the
claims are read under it and the first candidate with a free chair in every cell is claimed.
The claim table's unique key and capacity trigger hold even for a writer that skips the lock."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import asyncpg
from tistis_common.broker import PermanentError
from tistis_common.events import Event
from tistis_common.ids import stable_id
from tistis_common.logging import get_logger

from . import notices, outcomes
from . import repository as repo
from .availability import Branch, Slot, cells, day_slots, free_chair, local_dates, within_hours
from .catalog import Service, resolve_branches, resolve_service
from .deps import Deps
from .outbound import Recipient, recipient

log = get_logger(__name__)

Action = Literal["book", "reschedule", "cancel", "complete", "no_show"]


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


# ------------------------------------------------------------------ candidates (pure)


def _preference(text: str) -> date | datetime | None:
    text = text.strip()
    try:
        if "T" in text or " " in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        return date.fromisoformat(text)
    except ValueError:
        return None


def candidates(branches: list[Branch], duration: timedelta, step: timedelta, earliest: datetime,
               preferred: list[str], exact: datetime | None) -> list[Slot]:
    """Slots in the order they should be tried: the exact time if given; else, per preference in
    the patient's order, that day's slots (nearest to the wished time first, when one was given)."""
    if exact is not None:
        exact = exact.astimezone(UTC)
        return [Slot(exact, exact + duration, b.id) for b in branches
                if exact >= earliest and within_hours(b, exact, duration)]
    out: list[Slot] = []
    for raw in preferred:
        wish = _preference(raw)
        if wish is None:
            log.info("booking.preference_unreadable", preference=raw)
            continue
        found: list[tuple[object, Slot]] = []
        for b in branches:
            if isinstance(wish, datetime):
                target = wish if wish.tzinfo else wish.replace(tzinfo=b.timezone)
                day = target.astimezone(b.timezone).date()
                found += [(abs(s.start - target), s) for s in day_slots(b, day, duration, step)
                          if s.start >= earliest]
            else:
                found += [(s.start, s) for s in day_slots(b, wish, duration, step) if s.start >= earliest]
        out += [s for _, s in sorted(found, key=lambda p: p[0]) if s not in out]  # type: ignore[arg-type,return-value]
    return out


def next_free(branches: list[Branch], duration: timedelta, step: timedelta, earliest: datetime,
              days: int, taken: dict[uuid.UUID, dict[datetime, set[int]]], count: int,
              per_day: int = 2) -> list[Slot]:
    """The next free slots, at most `per_day` per branch and day so that the offer spans days."""
    found: list[Slot] = []
    for b in branches:
        for day in local_dates(b, earliest, days):
            free = [s for s in day_slots(b, day, duration, step)
                    if s.start >= earliest and free_chair(taken[b.id], cells(s.start, s.end), b.capacity)]
            found += free[:per_day]
    return sorted(found)[:count]


# ------------------------------------------------------------------ the transaction


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
                await repo.drop_claims(conn, moving)
            await repo.add_claims(conn, tenant_id, slot.branch_id, appointment_id, chairs)
            return slot
    return None


async def process(conn: asyncpg.Connection, req: Request, deps: Deps) -> Outcome:
    s = deps.settings
    now = deps.now()
    lead = await repo.lead(conn, req.lead_id)
    if lead is None:
        raise PermanentError(f"lead {req.lead_id} not found")
    to, _ = await recipient(conn, req.tenant_id, lead, req.conversation_id)
    all_branches = await repo.branches(conn)
    if not all_branches:
        raise PermanentError("the clinic has no branches")
    by_id = {b.id: b for b in all_branches}
    ctx: notices.Ctx = {"now": now, "correlation_id": req.correlation_id,
                        "source_event_id": req.source_event_id}

    if req.action in ("complete", "no_show"):
        name, events = await outcomes.record(conn, req.action, req.appointment_id, req.lead_id,
                                             deps, to, by_id, ctx)
        return Outcome(name, events, req.appointment_id)
    current = None
    if req.action in ("reschedule", "cancel"):
        current = (await repo.appointment(conn, req.appointment_id) if req.appointment_id
                   else await repo.next_booked(conn, req.lead_id, now))
        if current is None or current["status"] != "booked" or current["lead_id"] != req.lead_id:
            events = []
            if to:
                events.append(await notices.plain(
                    conn, to, key=("not-found", req.source_event_id), **ctx,
                    text="No encontramos una cita activa a tu nombre. ¿Quieres agendar una nueva?"))
            return Outcome("not_found", events)
    if req.action == "cancel":
        assert current is not None
        await repo.cancel_appointment(conn, current["id"], now)
        await repo.drop_claims(conn, current["id"])
        # The branch sees it among the appointments that need attention.
        await repo.flag_appointment(conn, current["id"], "cancelled by the patient", now)
        events = []
        if to:
            text = notices.cancelled_text(current["scheduled_at"], by_id[current["branch_id"]])
            events.append(await notices.plain(conn, to, key=("cancelled", current["id"]), text=text, **ctx))
        return Outcome("cancelled", events, current["id"])

    service = resolve_service(await repo.services(conn),
                              req.service_id or (current and current["service_id"]), req.service_name)
    branches = resolve_branches(all_branches, req.branch_id or (current and current["branch_id"]),
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

    appointment_id = current["id"] if current else stable_id("appointment", req.source_event_id)
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
                              current["id"] if current else None)
    if slot is None:
        if req.action == "book" and wanted:
            await conn.execute("DELETE FROM appointments WHERE id = $1", appointment_id)
        return await _offer(conn, req, deps, to, branches, by_id, service, earliest, step,
                            current["id"] if current else None, taken_slot=bool(wanted))

    await repo.move_appointment(conn, appointment_id, slot.branch_id, service.id, slot.start, slot.end, now)
    await repo.consume_offers(conn, req.lead_id, now)
    events = []
    if to:
        events.append(await notices.confirmation(
            conn, to, appointment_id=appointment_id, slot=slot, branch=by_id[slot.branch_id],
            service_name=service.name, rescheduled=req.action == "reschedule", **ctx))
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
    ctx: notices.Ctx = {"now": now, "correlation_id": req.correlation_id,
                        "source_event_id": req.source_event_id}
    if not to:
        return Outcome("unreachable")
    if not slots:
        text = ("Por ahora no tenemos horarios disponibles en las próximas semanas. "
                "Un miembro del equipo te contactará para encontrar una opción.")
        message = await notices.plain(conn, to, key=("none-free", req.source_event_id), text=text, **ctx)
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
                                service_name=service.name, intro=intro, **ctx)
    return Outcome("offered", [event])
