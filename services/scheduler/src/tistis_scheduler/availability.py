"""Free slots of a branch: opening hours by weekday in the branch's time zone, closed days, the
service's duration and the branch's capacity; which slots to try for a request, which to offer.
Pure functions; times in and out are UTC."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tistis_common.logging import get_logger

log = get_logger(__name__)

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


# ------------------------------------------------------------------ candidates


def _preference(text: str) -> date | datetime | None:
    text = text.strip()
    try:
        if "T" in text or " " in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        return date.fromisoformat(text)
    except ValueError:
        return None


def candidates(branches: list[Branch], duration: timedelta, step: timedelta, earliest: datetime,
               preferred: list[str], exact: datetime | None) -> list[Slot]:
    """Slots in the order they should be tried: the exact time if given; else, per preference in
    the patient's order, that day's slots (nearest to the wished time first, when one was given)."""
    if exact is not None:
        exact = exact.astimezone(UTC)
        return [Slot(exact, exact + duration, b.id) for b in branches
                if exact >= earliest and within_hours(b, exact, duration)]
    out: list[Slot] = []
    for raw in preferred:
        wish = _preference(raw)
        if wish is None:
            log.info("booking.preference_unreadable", preference=raw)
            continue
        found: list[tuple[object, Slot]] = []
        for b in branches:
            if isinstance(wish, datetime):
                target = wish if wish.tzinfo else wish.replace(tzinfo=b.timezone)
                day = target.astimezone(b.timezone).date()
                found += [(abs(s.start - target), s) for s in day_slots(b, day, duration, step)
                          if s.start >= earliest]
            else:
                found += [(s.start, s) for s in day_slots(b, wish, duration, step) if s.start >= earliest]
        out += [s for _, s in sorted(found, key=lambda p: p[0]) if s not in out]  # type: ignore[arg-type,return-value]
    return out


def next_free(branches: list[Branch], duration: timedelta, step: timedelta, earliest: datetime,
              days: int, taken: dict[uuid.UUID, dict[datetime, set[int]]], count: int,
              per_day: int = 2) -> list[Slot]:
    """The next free slots, at most `per_day` per branch and day so that the offer spans days."""
    found: list[Slot] = []
    for b in branches:
        for day in local_dates(b, earliest, days):
            free = [s for s in day_slots(b, day, duration, step)
                    if s.start >= earliest and free_chair(taken[b.id], cells(s.start, s.end), b.capacity)]
            found += free[:per_day]
    return sorted(found)[:count]
