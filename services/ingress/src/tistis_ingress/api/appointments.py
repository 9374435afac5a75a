"""Operator API, appointments: staff record how one went.

    POST /api/v1/appointments/{appointment_id}/outcome  {"status": "completed" | "no_show"}

A write is an event, as in `operator.py`: AppointmentRequested(action complete / no_show) for
the scheduler, which owns `appointments` (a no-show gets its follow-up there). The appointment
is looked up first under the key's tenant (RLS), so another tenant's id is a 404. The inbox
(`clinic.py`) marks outcomes with `queue_outcome` too, under the staff session.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict
from tistis_common.broker import Publisher
from tistis_common.db import tenant_tx
from tistis_common.events import AppointmentRequested

from . import repository
from .auth import tenant_key
from .common import not_found, publish_or_503
from .problems import errors

if TYPE_CHECKING:
    import asyncpg

    from ..deps import Deps

ROUTE = "operator"
ACTIONS = {"completed": "complete", "no_show": "no_show"}


class AppointmentOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["completed", "no_show"]


async def queue_outcome(pool: asyncpg.Pool, publisher: Publisher, tenant_id: uuid.UUID,
                        appointment_id: uuid.UUID, body: AppointmentOutcome,
                        route: str) -> AppointmentRequested:
    """Tell the scheduler how the tenant's appointment went; 404 if it is not the tenant's."""
    async with tenant_tx(pool, tenant_id) as conn:
        row = await repository.appointment(conn, appointment_id)
    if row is None:
        raise not_found(route, "appointment")
    event = AppointmentRequested(
        tenant_id=tenant_id, action=ACTIONS[body.status],  # type: ignore[arg-type]
        lead_id=row["lead_id"], conversation_id=row["conversation_id"],
        appointment_id=appointment_id, source="api",
    )
    await publish_or_503(publisher, [event], route)
    return event


def appointments_router(deps: Deps) -> APIRouter:
    pool, publisher = deps.pool, deps.publisher
    router = APIRouter(prefix="/api/v1", tags=["operator"])
    tenant = Depends(tenant_key(pool))

    @router.post("/appointments/{appointment_id}/outcome", status_code=202,
                 responses=errors(401, 404, 503))
    async def outcome(appointment_id: uuid.UUID, body: AppointmentOutcome,
                      tenant_id: uuid.UUID = tenant) -> dict:
        event = await queue_outcome(pool, publisher, tenant_id, appointment_id, body, ROUTE)
        return {"status": "queued", "event_id": str(event.event_id)}

    return router
