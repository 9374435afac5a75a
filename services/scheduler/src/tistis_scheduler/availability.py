"""Free slots of a branch: opening hours by weekday in the branch's time zone, closed days, the
service's duration and the branch's capacity. Pure functions; times in and out are UTC."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CELL = timedelta(minutes=15)  # capacity is claimed per 15-minute cell (see migration 0500)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Branch:
    id: uuid.UUID
    name: str
    address: str | None
    timezone: ZoneInfo
    opening_hours: Mapping[str, list[list[str]]]
    closed_days: frozenset[date] = field(default_factory=frozenset)
    capacity: int = 1


@dataclass(frozen=True, order=True)
class Slot:
    start: datetime  # UTC
    end: datetime
    branch_id: uuid.UUID = field(compare=False)


def _wall(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    if hhmm in ("24:00", "24:00:00"):
        return datetime.combine(day + timedelta(days=1), time(0), tz)
    return datetime.combine(day, time.fromisoformat(hhmm), tz)


def opening_intervals(branch: Branch, day: date) -> list[tuple[datetime, datetime]]:
    """The branch's open intervals on a local date, as UTC instants."""
    if day in branch.closed_days:
        return []
    intervals = []
    for opens, closes in branch.opening_hours.get(WEEKDAYS[day.weekday()], []):
        start = _wall(day, opens, branch.timezone).astimezone(UTC)
        end = _wall(day, closes, branch.timezone).astimezone(UTC)
        if end > start:
            intervals.append((start, end))
    return intervals


def day_slots(branch: Branch, day: date, duration: timedelta, step: timedelta) -> list[Slot]:
    """Candidate starts every `step` of wall-clock time from each opening, ending by its close.

    Steps are taken on the local wall clock so that a 09:00 opening offers 09:00, 09:30, ...
    whatever the UTC offset of that date (daylight saving included)."""
    slots: dict[datetime, Slot] = {}
    for start_utc, end_utc in opening_intervals(branch, day):
        wall = start_utc.astimezone(branch.timezone).replace(tzinfo=None)
        while True:
            start = wall.replace(tzinfo=branch.timezone).astimezone(UTC)
            if start + duration > end_utc:
                break
            if start >= start_utc:
                slots.setdefault(start, Slot(start, start + duration, branch.id))
            wall += step
    return sorted(slots.values())


def within_hours(branch: Branch, start: datetime, duration: timedelta) -> bool:
    """An exact time (legacy callback) is bookable only inside one opening interval."""
    day = start.astimezone(branch.timezone).date()
    end = start + duration
    return any(s <= start and end <= e for s, e in opening_intervals(branch, day))


def cells(start: datetime, end: datetime) -> list[datetime]:
    """The 15-minute cells an appointment covers (a start off the grid claims its whole cell)."""
    first = _EPOCH + ((start - _EPOCH) // CELL) * CELL
    out = []
    while first < end:
        out.append(first)
        first += CELL
    return out


def free_chair(taken: Mapping[datetime, set[int]], slot_cells: Iterable[datetime],
               capacity: int) -> dict[datetime, int] | None:
    """A chair number per cell (lowest free), or None if any cell is full."""
    chosen = {}
    for cell in slot_cells:
        used = taken.get(cell, set())
        chair = next((n for n in range(1, capacity + 1) if n not in used), None)
        if chair is None:
            return None
        chosen[cell] = chair
    return chosen


def local_dates(branch: Branch, start: datetime, days: int) -> list[date]:
    first = start.astimezone(branch.timezone).date()
    return [first + timedelta(days=n) for n in range(days)]
