"""Reminder buttons: `appt:<action>:<appointment id>` on the reminder (the WhatsApp template's
quick-reply buttons where the tenant's template configuration declares them, quick replies on
Messenger and Instagram), and what the patient's tap does: confirm marks the appointment
confirmed, reschedule offers free slots, cancel frees the slot and flags it for the branch."""

from __future__ import annotations

import uuid
from typing import Literal

from tistis_common.events import Button

PREFIX = "appt:"
TapAction = Literal["confirm", "reschedule", "cancel"]
ACTIONS: tuple[TapAction, ...] = ("confirm", "reschedule", "cancel")
TITLES: dict[str, str] = {"confirm": "✅ Confirmar", "reschedule": "📅 Reprogramar",
                          "cancel": "❌ Cancelar"}
# Where the declaration lives: channel_connections.settings of the WhatsApp connection,
# {"templates": {"recordatorio_cita": {"buttons": ["confirm", "reschedule", "cancel"]}}}
# (the order of the template's quick-reply buttons).
REMINDER_TEMPLATE = "recordatorio_cita"


def payload(action: str, appointment_id: uuid.UUID) -> str:
    return f"{PREFIX}{action}:{appointment_id}"


def parse(choice_id: str | None) -> tuple[TapAction, uuid.UUID] | None:
    parts = (choice_id or "").split(":")
    if len(parts) != 3 or f"{parts[0]}:" != PREFIX or parts[1] not in ACTIONS:
        return None
    try:
        return parts[1], uuid.UUID(parts[2])  # type: ignore[return-value]
    except ValueError:
        return None


def quick_replies(appointment_id: uuid.UUID) -> list[Button]:
    return [Button(id=payload(a, appointment_id), title=TITLES[a]) for a in ACTIONS]
