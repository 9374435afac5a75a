"""Words more than one service speaks, beside the event contract (`events`): the ids of the list
rows and buttons a patient taps, the WhatsApp templates by name, the order of delivery statuses.
One definition each, so that who writes a word and who reads it cannot drift apart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

# ------------------------------------------------------------- what a patient taps (choice ids)
# The scheduler answers these (books, confirms, offers, cancels); the AI responder leaves them be.
SLOT_PREFIX = "slot:"  # a list row offering a slot: `slot:<branch_id>:<service_id>:<iso utc>`
TAP_PREFIX = "appt:"  # a reminder button: `appt:<action>:<appointment id>`
CHOICE_PREFIXES = (SLOT_PREFIX, TAP_PREFIX)

TapAction = Literal["confirm", "reschedule", "cancel"]
TAP_ACTIONS: tuple[TapAction, ...] = ("confirm", "reschedule", "cancel")


def is_scheduler_choice(choice_id: str | None) -> bool:
    return (choice_id or "").startswith(CHOICE_PREFIXES)


def slot_choice_id(branch_id: uuid.UUID, service_id: uuid.UUID | None, start: datetime) -> str:
    """`slot:<branch_id>:<service_id>:<iso utc>` (service empty when none); < 200 characters,
    WhatsApp's limit for a list row id."""
    iso = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return f"{SLOT_PREFIX}{branch_id}:{service_id or ''}:{iso}"


def parse_slot_choice(choice_id: str) -> tuple[uuid.UUID, uuid.UUID | None, datetime] | None:
    parts = choice_id.split(":", 3)
    if len(parts) != 4 or f"{parts[0]}:" != SLOT_PREFIX:
        return None
    try:
        start = datetime.fromisoformat(parts[3].replace("Z", "+00:00"))
        if start.tzinfo is None:
            return None
        return uuid.UUID(parts[1]), uuid.UUID(parts[2]) if parts[2] else None, start
    except ValueError:
        return None


def tap_choice_id(action: TapAction, appointment_id: uuid.UUID) -> str:
    return f"{TAP_PREFIX}{action}:{appointment_id}"


def parse_tap_choice(choice_id: str | None) -> tuple[TapAction, uuid.UUID] | None:
    parts = (choice_id or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != TAP_PREFIX:
        return None
    action = next((a for a in TAP_ACTIONS if a == parts[1]), None)
    if action is None:
        return None
    try:
        return action, uuid.UUID(parts[2])
    except ValueError:
        return None


# ------------------------------------------------------------------------- WhatsApp templates
class Template(StrEnum):
    """The guide's templates (approved in Meta Business Manager) and their body variables, in
    order. The scheduler names them in `TemplateRef`s; the dispatcher sends them."""

    CITA_CONFIRMADA = "cita_confirmada"  # patient_name, date, time, branch
    RECORDATORIO_CITA = "recordatorio_cita"  # patient_name, date, time, branch
    BIENVENIDA = "bienvenida_esva"  # patient_name
    COTIZACION_ENVIADA = "cotizacion_enviada"  # patient_name, services
    SEGUIMIENTO = "seguimiento"  # patient_name


TEMPLATE_LANGUAGE = "es_MX"

# ------------------------------------------------------------------------- delivery statuses
# Statuses arrive out of order (a `read` before its `delivered`); whoever stores them keeps the
# highest rank and never moves back. `failed` is final and outside the rank: it replaces any
# status below `read` (a message read cannot fail afterwards).
STATUS_RANK: dict[str, int] = {"pending": 0, "sending": 0, "sent": 1, "delivered": 2, "read": 3}
