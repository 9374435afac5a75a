"""The inbox's clinic views: a branch's appointments day (reschedule and cancel go to the
scheduler as AppointmentRequested source api; it owns `appointments`; completed / no-show
through the operator route's `queue_outcome`), a lead view with the
person on every channel (phone numbers that match, or leads merged by hand), and the reports
per day and channel."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query
from tistis_common.db import tenant_tx
from tistis_common.events import AppointmentRequested

from . import clinic_repository as clinic
from . import repository
from . import staff_repository as repo
from .appointments import AppointmentOutcome, queue_outcome
from .common import not_found, publish_or_503
from .inbox import window_open
from .inbox_models import (
    Appointment,
    AppointmentDay,
    Branch,
    BranchList,
    ConversationSummary,
    LeadAppointment,
    LeadView,
    Merge,
    PersonLead,
    Queued,
    Report,
    ReportRow,
    Reschedule,
    ScoreChange,
)
from .principal import Principal, staff
from .problems import errors

if TYPE_CHECKING:
    from ..deps import Deps

ROUTE = "inbox.clinic"
MAX_REPORT_DAYS = 92


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def clinic_router(deps: Deps) -> APIRouter:
    pool, publisher, settings = deps.pool, deps.publisher, deps.settings
    router = APIRouter(prefix="/api/v1/inbox", tags=["inbox: clinic"])
    who = Depends(staff(pool, settings, ROUTE))

    async def record(principal: Principal, action: str, object_id: uuid.UUID,
                     detail: dict[str, Any]) -> None:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, action, object_id, detail)

    @router.get("/branches", response_model=BranchList, responses=errors(401, 429))
    async def branches(principal: Principal = who) -> BranchList:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await clinic.branches(conn)
        return BranchList(branches=[Branch(**dict(r)) for r in rows])

    @router.get("/appointments", response_model=AppointmentDay, responses=errors(401, 404, 429))
    async def appointments(branch_id: uuid.UUID, on: date = Query(alias="date"),
                           principal: Principal = who) -> AppointmentDay:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if not await repository.branch_exists(conn, branch_id):
                raise not_found(ROUTE, "branch")
            rows = await clinic.day(conn, branch_id, on)
        return AppointmentDay(branch_id=branch_id, date=on.isoformat(),
                              appointments=[Appointment(**dict(r)) for r in rows])

    async def change(principal: Principal, appointment_id: uuid.UUID,
                     **fields: Any) -> Queued:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            row = await clinic.appointment(conn, appointment_id)
        if row is None:
            raise not_found(ROUTE, "appointment")
        if row["status"] != "booked":
            raise HTTPException(409, f"the appointment is {row['status']}")
        at = fields.get("scheduled_at")
        if at is not None and at.tzinfo is None:  # the branch's wall clock
            fields["scheduled_at"] = at.replace(tzinfo=ZoneInfo(row["timezone"]))
        event = AppointmentRequested(
            tenant_id=principal.tenant_id, lead_id=row["lead_id"], appointment_id=row["id"],
            conversation_id=row["conversation_id"], branch_id=row["branch_id"], source="api",
            **fields)
        await publish_or_503(publisher, [event], ROUTE)
        await record(principal, f"appointment.{fields['action']}", appointment_id,
                     {"scheduled_at": fields["scheduled_at"].isoformat()}
                     if fields.get("scheduled_at") else {})
        return Queued(status="queued", event_id=event.event_id)

    @router.post("/appointments/{appointment_id}/reschedule", status_code=202,
                 response_model=Queued, responses=errors(401, 404, 409, 429, 503))
    async def reschedule(appointment_id: uuid.UUID, body: Reschedule,
                         principal: Principal = who) -> Queued:
        return await change(principal, appointment_id, action="reschedule",
                            scheduled_at=body.scheduled_at)

    @router.post("/appointments/{appointment_id}/cancel", status_code=202, response_model=Queued,
                 responses=errors(401, 404, 409, 429, 503))
    async def cancel(appointment_id: uuid.UUID, principal: Principal = who) -> Queued:
        return await change(principal, appointment_id, action="cancel")

    @router.post("/appointments/{appointment_id}/outcome", status_code=202,
                 response_model=Queued, responses=errors(401, 403, 404, 429, 503))
    async def outcome(appointment_id: uuid.UUID, body: AppointmentOutcome,
                      principal: Principal = who) -> Queued:
        event = await queue_outcome(pool, publisher, principal.tenant_id, appointment_id, body,
                                    ROUTE)
        await record(principal, f"appointment.{body.status}", appointment_id, {})
        return Queued(status="queued", event_id=event.event_id)

    @router.get("/leads/{lead_id}", response_model=LeadView, responses=errors(401, 404, 429))
    async def lead(lead_id: uuid.UUID, principal: Principal = who) -> LeadView:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            row = await clinic.lead(conn, lead_id)
            if row is None:
                raise not_found(ROUTE, "lead")
            people = await clinic.person(conn, lead_id)
            ids = [p["id"] for p in people]
            history = await clinic.score_history(conn, ids)
            booked = await clinic.appointments_of(conn, ids)
            conversations = []
            for person_lead in ids:
                conversations += await repo.list_conversations(
                    conn, me=principal.user_id, filter="all", channel=None, branch_id=None,
                    lead_id=person_lead, search=None, after=None, limit=20)
        return LeadView(
            lead=PersonLead(**dict(people[0])), score=row["score"],
            classification=row["classification"], spam=row["spam"],
            interested_services=list(row["interested_services"]),
            leads=[PersonLead(**dict(p)) for p in people],
            score_history=[ScoreChange(**dict(h)) for h in history],
            conversations=[ConversationSummary(**dict(c), window_open=window_open(
                c, settings.tiktok_window_hours)) for c in conversations],
            appointments=[LeadAppointment(**dict(a)) for a in booked])

    @router.post("/leads/{lead_id}/merge", response_model=Queued, responses=errors(401, 404, 409, 429))
    async def merge(lead_id: uuid.UUID, body: Merge, principal: Principal = who) -> Queued:
        """`body.lead_id` is the same person as `lead_id` (e.g. their Instagram and WhatsApp)."""
        if body.lead_id == lead_id:
            raise HTTPException(409, "a lead is already itself")
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if await clinic.lead(conn, lead_id) is None or await clinic.lead(conn, body.lead_id) is None:
                raise not_found(ROUTE, "lead")
            await clinic.link(conn, principal.tenant_id, body.lead_id, lead_id, principal.user_id)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "lead.merged", lead_id,
                                     {"lead_id": str(body.lead_id)})
        return Queued(status="done")

    @router.get("/reports", response_model=Report, responses=errors(401, 409, 429))
    async def reports(principal: Principal = who, start: date | None = Query(None),
                      end: date | None = Query(None)) -> Report:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            tz = await clinic.timezone(conn, principal.tenant_id)
            today = await clinic.today(conn, tz)
            last = end or today
            first = start or last - timedelta(days=6)
            if first > last or (last - first).days >= MAX_REPORT_DAYS:
                raise HTTPException(409, f"a report spans 1 to {MAX_REPORT_DAYS} days")
            rows = await clinic.report(conn, tz, first, last)
        out = []
        for r in rows:
            answered = r["by_ai"] + r["by_fallback"] + r["by_staff"]
            out.append(ReportRow(
                **{**dict(r), "day": r["day"].isoformat()},
                share_ai=_share(r["by_ai"], answered),
                share_fallback=_share(r["by_fallback"], answered),
                share_staff=_share(r["by_staff"], answered)))
        return Report(timezone=tz, start=first.isoformat(), end=last.isoformat(), rows=out)

    return router
