"""Rules applied before any model call: escalation keywords and business hours."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .signals import normalize

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES_ES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
DAY_NAMES_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
             "septiembre", "octubre", "noviembre", "diciembre")


def contains_phrase(text: str, phrase: str) -> bool:
    """Whole-word, case and accent insensitive: 'QUEJA' matches 'queja', 'Urgénte' 'urgente'."""
    needle = normalize(phrase)
    if not needle:
        return False
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", normalize(text)) is not None


def matching_keyword(texts: Iterable[str], keywords: Sequence[str]) -> str | None:
    for text in texts:
        for keyword in keywords:
            if contains_phrase(text, keyword):
                return keyword
    return None


def _zone(name: str | None, default: str) -> ZoneInfo:
    for candidate in (name, default, "America/Mexico_City"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _ranges(hours: Mapping[str, object], day: str) -> list[tuple[time, time]]:
    out = []
    pairs: Any = hours.get(day) or []
    for pair in pairs:
        try:
            start, end = (time.fromisoformat(str(v)) for v in pair)
        except (TypeError, ValueError):
            continue  # one malformed range must not take the responder down
        out.append((start, end))
    return out


def next_opening(hours: Mapping[str, object], tenant_timezone: str,
                 now: datetime) -> datetime | None:
    """None while the clinic is open; else when it opens next (in its timezone).

    `hours` is ai_tenant_context.business_hours: {"timezone": ..., "mon": [["09:00","18:00"]]}.
    A clinic with no hours at all is treated as always open (nothing to tell the patient).
    """
    zone = _zone(hours.get("timezone") if isinstance(hours.get("timezone"), str) else None,  # type: ignore[arg-type]
                 tenant_timezone)
    local = now.astimezone(zone)
    if not any(_ranges(hours, d) for d in WEEKDAYS):
        return None
    for start, end in _ranges(hours, WEEKDAYS[local.weekday()]):
        if start <= local.time() < end:
            return None
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        for start, _end in sorted(_ranges(hours, WEEKDAYS[day.weekday()])):
            opening = datetime.combine(day, start, tzinfo=zone)
            if opening > local:
                return opening
    return None


def describe_opening(opening: datetime, now: datetime, lang: str = "es") -> str:
    """'hoy a las 09:00', 'mañana a las 09:00', 'el lunes a las 09:00' (or in English)."""
    local_now = now.astimezone(opening.tzinfo)
    days = (opening.date() - local_now.date()).days
    at = opening.strftime("%H:%M")
    if lang == "en":
        day = "today" if days == 0 else "tomorrow" if days == 1 else \
            f"on {DAY_NAMES_EN[opening.weekday()]}"
        return f"{day} at {at}"
    if days == 0:
        return f"hoy a las {at}"
    if days == 1:
        return f"mañana a las {at}"
    return f"el {DAY_NAMES_ES[opening.weekday()]} a las {at}"


def local_now_text(hours: Mapping[str, object], tenant_timezone: str, now: datetime) -> str:
    """What the model must know to turn "mañana a las 10" or "el viernes" into ISO dates:
    the clinic's local date, weekday and time (per request: never in the cached block)."""
    zone_name = hours.get("timezone") if isinstance(hours.get("timezone"), str) else None
    zone = _zone(zone_name, tenant_timezone)  # type: ignore[arg-type]
    local = now.astimezone(zone)
    return (f"Ahora es {DAY_NAMES_ES[local.weekday()]} {local.day} de "
            f"{MONTHS_ES[local.month - 1]} de {local.year}, {local:%H:%M} en la clínica "
            f"(fecha local {local:%Y-%m-%d}, {DAY_NAMES_EN[local.weekday()]}; zona {zone.key}).")
