"""Slots from opening hours in the branch's zone: daylight saving edges (Tijuana follows the
US changes; Mexico City has had none since 2022), closed days, capacity cells."""

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tistis_scheduler.availability import Branch, candidates, cells, day_slots, free_chair, within_hours

WEEKDAYS = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
HOUR, HALF = timedelta(hours=1), timedelta(minutes=30)


def branch(tz: str, hours=None, closed=(), capacity=1) -> Branch:
    return Branch(uuid.uuid4(), "Centro", None, ZoneInfo(tz), hours or WEEKDAYS, frozenset(closed), capacity)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestOpeningHoursAcrossTimeZones:
    def test_tijuana_opens_an_hour_earlier_in_utc_after_the_us_spring_change(self):
        tj = branch("America/Tijuana")
        assert day_slots(tj, date(2026, 3, 6), HOUR, HALF)[0].start == utc(2026, 3, 6, 17)  # PST -8
        assert day_slots(tj, date(2026, 3, 9), HOUR, HALF)[0].start == utc(2026, 3, 9, 16)  # PDT -7

    def test_tijuana_opens_an_hour_later_in_utc_after_the_autumn_change(self):
        tj = branch("America/Tijuana")
        assert day_slots(tj, date(2026, 10, 30), HOUR, HALF)[0].start == utc(2026, 10, 30, 16)
        assert day_slots(tj, date(2026, 11, 2), HOUR, HALF)[0].start == utc(2026, 11, 2, 17)

    def test_mexico_city_keeps_one_offset_all_year(self):
        cdmx = branch("America/Mexico_City")
        for day in (date(2026, 1, 5), date(2026, 4, 6), date(2026, 7, 6), date(2026, 11, 2)):
            assert day_slots(cdmx, day, HOUR, HALF)[0].start == utc(day.year, day.month, day.day, 15)

    def test_night_of_the_spring_change_has_no_duplicate_or_phantom_slot(self):
        # 00:00-06:00 on 8 March 2026 in Tijuana is only five real hours: 02:00-03:00 never happens.
        tj = branch("America/Tijuana", {"sun": [["00:00", "06:00"]]})
        starts = [s.start for s in day_slots(tj, date(2026, 3, 8), HOUR, HOUR)]
        assert starts == [utc(2026, 3, 8, h) for h in (8, 9, 10, 11, 12)]

    def test_slots_end_by_closing_time(self):
        slots = day_slots(branch("America/Mexico_City"), date(2027, 1, 11), timedelta(minutes=45), HALF)
        assert slots[-1].start == utc(2027, 1, 11, 23, 0)  # 17:00 local, ends 17:45
        assert all(s.end <= utc(2027, 1, 12, 0) for s in slots)


class TestClosedTimes:
    def test_weekend_and_closed_days_have_no_slots(self):
        b = branch("America/Mexico_City", closed=[date(2027, 1, 12)])
        assert day_slots(b, date(2027, 1, 9), HOUR, HALF) == []  # Saturday
        assert day_slots(b, date(2027, 1, 12), HOUR, HALF) == []  # closed day
        assert day_slots(b, date(2027, 1, 13), HOUR, HALF)

    def test_exact_time_must_fit_inside_opening_hours(self):
        b = branch("America/Mexico_City")
        assert within_hours(b, utc(2027, 1, 11, 16, 10), HOUR)  # 10:10 local
        assert not within_hours(b, utc(2027, 1, 11, 23, 30), HOUR)  # 17:30, ends after 18:00
        assert not within_hours(b, utc(2027, 1, 9, 16), HOUR)  # Saturday


class TestCapacityCells:
    def test_appointment_claims_every_quarter_hour_it_touches(self):
        assert cells(utc(2027, 1, 11, 15, 10), utc(2027, 1, 11, 15, 50)) == [
            utc(2027, 1, 11, 15, 0), utc(2027, 1, 11, 15, 15), utc(2027, 1, 11, 15, 30),
            utc(2027, 1, 11, 15, 45)]

    def test_a_full_cell_refuses_and_a_free_chair_is_the_lowest(self):
        c = utc(2027, 1, 11, 15)
        assert free_chair({c: {1}}, [c], capacity=1) is None
        assert free_chair({c: {1}}, [c], capacity=2) == {c: 2}


class TestPreferences:
    def test_wished_time_comes_first_then_its_neighbours(self):
        b = branch("America/Mexico_City")
        found = candidates([b], HOUR, HALF, utc(2027, 1, 8), ["2027-01-11T11:00"], None)
        assert [s.start for s in found[:3]] == [utc(2027, 1, 11, 17), utc(2027, 1, 11, 16, 30),
                                                utc(2027, 1, 11, 17, 30)]

    def test_dates_are_tried_in_the_patient_order(self):
        b = branch("America/Mexico_City")
        found = candidates([b], HOUR, HALF, utc(2027, 1, 8), ["2027-01-12", "2027-01-11"], None)
        assert found[0].start == utc(2027, 1, 12, 15)
        assert utc(2027, 1, 11, 15) in [s.start for s in found]

    def test_nothing_sooner_than_the_notice_and_unreadable_wishes_are_skipped(self):
        b = branch("America/Mexico_City")
        found = candidates([b], HOUR, HALF, utc(2027, 1, 11, 20), ["mañana", "2027-01-11"], None)
        assert found[0].start == utc(2027, 1, 11, 20)
