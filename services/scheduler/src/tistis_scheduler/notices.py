"""What the patient reads: confirmation, offer of free slots, cancellation, reminder, follow-up,
reminder buttons. Templates on WhatsApp (they pass the 24 h window), plain text on the other
channels."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from tistis_common.events import Button, Channel, ListRow, ListSection, OutboundMessage
from tistis_common.vocabulary import TAP_ACTIONS, Template, slot_choice_id, tap_choice_id

from . import outbound
from .availability import Branch, Slot
from .outbound import Recipient
from .spanish import corta, fecha, fecha_hora, hora

if TYPE_CHECKING:
    import asyncpg

LIST_BUTTON = "Ver horarios"  # WhatsApp: at most 20 characters
TAP_TITLES: dict[str, str] = {"confirm": "✅ Confirmar", "reschedule": "📅 Reprogramar",
                              "cancel": "❌ Cancelar"}


@dataclass(frozen=True)
class Origin:
    """Where a consumer's message comes from: the clock, the chain and the consumed event."""

    now: datetime
    correlation_id: uuid.UUID | None
    source_event_id: uuid.UUID


ROW_TITLE, ROW_DESCRIPTION, SECTION_TITLE, MAX_ROWS = 24, 72, 24, 10
QUICK_REPLY_TITLE = 20  # Messenger and Instagram quick replies (at most 13)
QUICK_REPLY_CHANNELS = (Channel.FACEBOOK, Channel.INSTAGRAM)


async def confirmation(conn: asyncpg.Connection, to: Recipient, *, appointment_id: uuid.UUID,
                       slot: Slot, branch: Branch, service_name: str | None, rescheduled: bool,
                       origin: Origin) -> OutboundMessage:
    at = slot.start.astimezone(branch.timezone)
    what = f"Tu cita de {service_name}" if service_name else "Tu cita"
    verb = "quedó reprogramada" if rescheduled else "quedó agendada"
    where = branch.name + (f" ({branch.address})" if branch.address else "")
    text = f"¡Listo, {to.display_name}! {what} {verb} para el {fecha(at)} a las {hora(at)} en {where}."
    tpl = None
    if to.channel is Channel.WHATSAPP:
        tpl = outbound.template(Template.CITA_CONFIRMADA, to.display_name, fecha(at), hora(at),
                                branch.name)
    return await outbound.queue(
        conn, to, key=("confirmation", appointment_id, slot.start.isoformat()), purpose="confirmation",
        text=text, template=tpl, now=origin.now, correlation_id=origin.correlation_id,
    )


async def offer(conn: asyncpg.Connection, to: Recipient, *, slots: list[Slot],
                branches: dict[uuid.UUID, Branch],
                service_id: uuid.UUID | None, service_name: str | None, intro: str,
                origin: Origin) -> OutboundMessage:
    key = ("offer", origin.source_event_id)
    what = f" para {service_name}" if service_name else ""
    if to.channel is Channel.WHATSAPP:
        sections: dict[uuid.UUID, list[ListRow]] = {}
        for slot in slots[:MAX_ROWS]:
            b = branches[slot.branch_id]
            at = slot.start.astimezone(b.timezone)
            sections.setdefault(b.id, []).append(ListRow(
                id=slot_choice_id(b.id, service_id, slot.start), title=corta(at)[:ROW_TITLE],
                description=f"{fecha_hora(at)} · {b.name}"[:ROW_DESCRIPTION],
            ))
        text = f"{intro} Estos son los próximos horarios disponibles{what}; elige el que prefieras."
        return await outbound.queue(
            conn, to, key=key, purpose="reply", text=text,
            sections=[ListSection(title=branches[bid].name[:SECTION_TITLE], rows=rows)
                      for bid, rows in sections.items()],
            list_button=LIST_BUTTON, now=origin.now, correlation_id=origin.correlation_id,
        )
    lines = []
    for n, slot in enumerate(slots, 1):
        b = branches[slot.branch_id]
        lines.append(f"{n}. {fecha_hora(slot.start.astimezone(b.timezone))} ({b.name})")
    head = f"{intro} Estos son los próximos horarios disponibles{what}:\n" + "\n".join(lines)
    if to.channel in QUICK_REPLY_CHANNELS:
        # A tapped quick reply comes back with its payload as the choice id, like a list row.
        buttons = [Button(id=slot_choice_id(s.branch_id, service_id, s.start),
                          title=corta(s.start.astimezone(branches[s.branch_id].timezone))[:QUICK_REPLY_TITLE])
                   for s in slots]
        return await outbound.queue(conn, to, key=key, purpose="reply",
                                    text=head + "\nElige el horario que prefieras.", quick_replies=buttons,
                                    now=origin.now, correlation_id=origin.correlation_id)
    text = head + "\nRespóndenos con el horario que prefieras."
    return await outbound.queue(conn, to, key=key, purpose="reply", text=text,
                                now=origin.now, correlation_id=origin.correlation_id)


async def plain(conn: asyncpg.Connection, to: Recipient, *, key: tuple[object, ...], text: str,
                origin: Origin) -> OutboundMessage:
    return await outbound.queue(conn, to, key=key, purpose="reply", text=text, now=origin.now,
                                correlation_id=origin.correlation_id)


def tap_buttons(appointment_id: uuid.UUID) -> list[Button]:
    """The reminder's three buttons as quick replies (Messenger, Instagram)."""
    return [Button(id=tap_choice_id(a, appointment_id), title=TAP_TITLES[a]) for a in TAP_ACTIONS]


def cancelled_text(start: datetime, branch: Branch) -> str:
    at = start.astimezone(branch.timezone)
    return (f"Tu cita del {fecha(at)} a las {hora(at)} en {branch.name} quedó cancelada. "
            "Si quieres agendar otra, con gusto te ayudamos.")


def confirmed_text(start: datetime, branch: Branch) -> str:
    at = start.astimezone(branch.timezone)
    return (f"¡Gracias! Tu cita del {fecha(at)} a las {hora(at)} en {branch.name} "
            "quedó confirmada. Te esperamos.")


def no_show_text(name: str, start: datetime, branch: Branch) -> str:
    at = start.astimezone(branch.timezone)
    return (f"Hola {name}, te esperábamos el {fecha(at)} a las {hora(at)} en {branch.name}. "
            "¿Quieres que te ayudemos a reprogramar tu cita?")


def reminder_text(name: str, start: datetime, branch: Branch) -> str:
    at = start.astimezone(branch.timezone)
    return (f"Hola {name}, te recordamos tu cita del {fecha(at)} a las {hora(at)} en {branch.name}. "
            "Si necesitas cambiarla, respóndenos por aquí.")


def followup_text(name: str) -> str:
    return (f"Hola {name}, ¿pudiste revisar la información que te compartimos? "
            "Con gusto te ayudamos a agendar tu cita.")
