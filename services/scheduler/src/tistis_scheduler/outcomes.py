"""Staff record how an appointment went: `completed` or `no_show` (operator API, CLI). A no-show
gets a follow-up at once (`seguimiento` on WhatsApp, text elsewhere; the dispatcher keeps it
from leads who opted out and outside the channels' windows), when the setting allows."""

from __future__ import annotations

import uuid

import asyncpg
from tistis_common.broker import PermanentError
from tistis_common.events import Channel, Event
from tistis_common.logging import get_logger

from . import notices, outbound
from . import repository as repo
from .availability import Branch
from .deps import Deps
from .outbound import Recipient

log = get_logger(__name__)

STATUS = {"complete": "completed", "no_show": "no_show"}


async def record(conn: asyncpg.Connection, action: str, appointment_id: uuid.UUID | None,
                 lead_id: uuid.UUID, deps: Deps, to: Recipient | None,
                 branches: dict[uuid.UUID, Branch], ctx: notices.Ctx) -> tuple[str, list[Event]]:
    """(outcome name, events) for the booking handler."""
    if appointment_id is None:
        raise PermanentError(f"{action} needs the appointment id")
    current = await repo.appointment(conn, appointment_id)
    if current is None or current["lead_id"] != lead_id:
        raise PermanentError(f"appointment {appointment_id} not found for lead {lead_id}")
    status = STATUS[action]
    if current["status"] == status:
        return "unchanged", []
    if current["status"] not in ("booked", "completed", "no_show"):
        raise PermanentError(f"appointment {current['id']} is {current['status']}")
    await repo.set_appointment_status(conn, current["id"], status, ctx["now"])
    events: list[Event] = []
    opted_out = await repo.opted_out(conn, lead_id)
    if (status == "no_show" and deps.settings.scheduler_no_show_followup and to is not None
            and not opted_out):  # a patient who opted out gets no follow-up, not even queued
        template = (outbound.template("seguimiento", to.display_name)
                    if to.channel is Channel.WHATSAPP else None)
        events.append(await outbound.queue(
            conn, to, key=("no-show", current["id"]), purpose="followup",
            text=notices.no_show_text(to.display_name, current["scheduled_at"],
                                      branches[current["branch_id"]]),
            template=template, **ctx))
    log.info("appointment.outcome", appointment_id=str(current["id"]), status=status)
    return status, events
