"""`tistis appointment mark <tenant> <appointment id> completed|no_show`: what the operator API's
`POST /api/v1/appointments/{id}/outcome` does, from the command line (the same event for the
scheduler, which owns appointments; a no-show gets its follow-up there)."""

from __future__ import annotations

import uuid
from enum import StrEnum

import typer
from tistis_common.broker import Publisher, connect
from tistis_common.events import AppointmentRequested

from . import repository
from .common import CliError, owner_db, resolve_tenant, run, settings

appointment_app = typer.Typer(no_args_is_help=True, help="Appointments: record how they went.")


class Outcome(StrEnum):
    completed = "completed"
    no_show = "no_show"


ACTIONS = {Outcome.completed: "complete", Outcome.no_show: "no_show"}


async def _mark(slug: str, appointment_id: uuid.UUID, outcome: Outcome) -> AppointmentRequested:
    async with owner_db() as conn:
        tenant_id = await resolve_tenant(conn, slug)
        found = await repository.appointment(conn, tenant_id, appointment_id)
    if found is None:
        raise CliError(f"no appointment {appointment_id} in tenant {slug}")
    event = AppointmentRequested(
        tenant_id=tenant_id, action=ACTIONS[outcome],  # type: ignore[arg-type]
        lead_id=found.lead_id, conversation_id=found.conversation_id,
        appointment_id=appointment_id, source="cli",
    )
    connection = await connect(settings().rabbitmq_url)
    try:
        await (await Publisher.open(connection)).publish(event)
    finally:
        await connection.close()
    return event


@appointment_app.command("mark")
def mark(slug: str = typer.Argument(..., help="tenant slug"),
         appointment_id: uuid.UUID = typer.Argument(...),
         outcome: Outcome = typer.Argument(..., help="completed or no_show")) -> None:
    """Record that the appointment was completed, or that the patient did not come."""
    event = run(_mark(slug, appointment_id, outcome))
    typer.echo(f"queued {outcome.value} for appointment {appointment_id} (event {event.event_id})")
