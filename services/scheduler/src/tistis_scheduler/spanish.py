"""Dates in Spanish, written out by hand: the OS locale may be missing on slim images, and
`strftime` in the C locale speaks English."""

from __future__ import annotations

from datetime import datetime

DAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
MONTHS = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
)


def fecha(moment: datetime) -> str:
    """'lunes 15 de enero' (of an already local datetime)."""
    return f"{DAYS[moment.weekday()]} {moment.day} de {MONTHS[moment.month - 1]}"


def hora(moment: datetime) -> str:
    """'10:00', 24-hour clock as clinics in Mexico write it."""
    return f"{moment.hour:02d}:{moment.minute:02d}"


def fecha_hora(moment: datetime) -> str:
    """'lunes 15 de enero, 10:00'."""
    return f"{fecha(moment)}, {hora(moment)}"


def corta(moment: datetime) -> str:
    """'lun 15 ene, 10:00': fits a WhatsApp list row title (24 characters)."""
    return f"{DAYS[moment.weekday()][:3]} {moment.day} {MONTHS[moment.month - 1][:3]}, {hora(moment)}"
