"""Reminders 24 h before, exactly once, whatever the number of scheduler replicas."""

import asyncio
from datetime import UTC, datetime, timedelta

from tistis_common.events import Channel
from tistis_common.testing.plugin import eventually
from tistis_scheduler.main import run_once
from tistis_scheduler.passes import run_pass


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


MONDAY_9 = utc(2027, 1, 11, 15)  # lunes 11 de enero, 09:00 in Mexico City


async def reminder_rows(rows, tenant_id):
    return await rows.fetch(tenant_id, "SELECT * FROM messages WHERE purpose = 'reminder'")


class TestReminderOnce:
    async def test_due_reminder_goes_once_with_two_schedulers_running(
        self, scheduler, make_tenant, rows, bus, clock, deps_for
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        appt = await rows.appointment(p, at=MONDAY_9, booked_at=utc(2027, 1, 4))
        clock.set(MONDAY_9 - timedelta(hours=23))
        async with scheduler(tick=0.02) as one, scheduler(tick=0.02) as two:
            await eventually(lambda: rows.val(tenant.id, "SELECT reminder_sent FROM appointments"))
            # and both replicas racing pass after pass on the same rows
            await asyncio.gather(*(run_pass(deps_for(r)) for r in (one, two) for _ in range(5)))
            sent = await bus.events(tenant.id, at_least=1)
        assert len(sent) == 1
        [reminder] = sent
        assert reminder.purpose == "reminder" and reminder.kind == "template"
        assert reminder.template.name == "recordatorio_cita"
        assert reminder.template.body_params == ["María García", "lunes 11 de enero", "09:00", "Centro"]
        assert len(await reminder_rows(rows, tenant.id)) == 1
        [row] = await rows.fetch(tenant.id, "SELECT reminder_sent_at FROM appointments WHERE id = $1", appt)
        assert row["reminder_sent_at"] == clock()

    async def test_nothing_is_sent_before_the_24_hours(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        await rows.appointment(p, at=MONDAY_9, booked_at=utc(2027, 1, 4))
        clock.set(MONDAY_9 - timedelta(hours=24, seconds=1))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            assert await bus.events(tenant.id) == []
            clock.advance(seconds=1)
            await run_pass(deps_for(runtime))
            assert len(await bus.events(tenant.id, at_least=1)) == 1

    async def test_appointment_booked_within_24_hours_gets_no_reminder(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        await rows.appointment(p, at=MONDAY_9, booked_at=MONDAY_9 - timedelta(hours=5))
        clock.set(MONDAY_9 - timedelta(hours=4))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
        assert await bus.events(tenant.id) == []


class TestMissedReminders:
    async def test_missed_reminder_is_caught_up_while_the_appointment_is_ahead(
        self, make_tenant, rows, bus, clock, settings
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        ahead = await rows.appointment(p, at=MONDAY_9, booked_at=utc(2027, 1, 4))
        gone = await rows.appointment(p, at=MONDAY_9 - timedelta(hours=3), booked_at=utc(2027, 1, 4))
        clock.set(MONDAY_9 - timedelta(hours=2))  # down for 22 h: both reminders were due
        result = await run_once(settings, now=clock)  # what `tistis-scheduler run-once` does
        assert (result.reminders, result.errors) == (1, [])
        [sent] = await bus.events(tenant.id, at_least=1)
        assert sent.template.body_params[1:3] == ["lunes 11 de enero", "09:00"]
        sent_flags = dict((r["id"], r["reminder_sent"]) for r in await rows.fetch(
            tenant.id, "SELECT id, reminder_sent FROM appointments"))
        assert sent_flags == {ahead: True, gone: False}


class TestWindowChannels:
    async def test_instagram_outside_the_window_flags_the_appointment_for_staff(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        tenant = await make_tenant()
        clock.set(MONDAY_9 - timedelta(hours=20))
        p = await rows.patient(tenant, channel="instagram", last_inbound_at=clock() - timedelta(hours=30))
        appt = await rows.appointment(p, at=MONDAY_9, booked_at=utc(2027, 1, 4))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            assert await bus.events(tenant.id) == []
            [row] = await rows.fetch(tenant.id, "SELECT * FROM appointments WHERE id = $1", appt)
            assert row["needs_attention"] and not row["reminder_sent"]
            assert "24 h messaging window" in row["attention_reason"]
            # the patient writes again: the window opens and the reminder goes as text
            await rows.message(p, direction="inbound", at=clock.advance(hours=1))
            await run_pass(deps_for(runtime))
            [sent] = await bus.events(tenant.id, at_least=1)
        assert sent.channel is Channel.INSTAGRAM and sent.kind == "quick_replies"
        assert sent.text.startswith(
            "Hola María García, te recordamos tu cita del lunes 11 de enero a las 09:00")
        [row] = await rows.fetch(tenant.id, "SELECT * FROM appointments WHERE id = $1", appt)
        assert row["reminder_sent"] and not row["needs_attention"]

    async def test_tiktok_inside_the_window_gets_a_text_reminder(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        tenant = await make_tenant()
        clock.set(MONDAY_9 - timedelta(hours=20))
        p = await rows.patient(tenant, channel="tiktok", last_inbound_at=clock() - timedelta(hours=2))
        await rows.appointment(p, at=MONDAY_9, booked_at=utc(2027, 1, 4))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            [sent] = await bus.events(tenant.id, at_least=1)
        assert (sent.channel, sent.kind, sent.purpose) == (Channel.TIKTOK, "text", "reminder")


class TestDaylightSaving:
    async def test_tijuana_reminder_is_due_24_real_hours_before_across_the_spring_change(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        tenant = await make_tenant()
        await rows.branch(tenant.id, timezone="America/Tijuana")
        p = await rows.patient(tenant)
        at = utc(2026, 3, 9, 16)  # lunes 9 de marzo, 09:00 PDT (the day after the change)
        await rows.appointment(p, at=at, booked_at=utc(2026, 3, 1))
        async with scheduler() as runtime:
            clock.set(utc(2026, 3, 8, 15, 59))
            await run_pass(deps_for(runtime))
            assert await bus.events(tenant.id) == []
            clock.set(utc(2026, 3, 8, 16))
            await run_pass(deps_for(runtime))
            [sent] = await bus.events(tenant.id, at_least=1)
        assert sent.template.body_params == ["María García", "lunes 9 de marzo", "09:00", "Centro"]

    async def test_tijuana_booking_after_the_autumn_change_shows_local_time(
        self, make_tenant, rows, bus, clock, scheduler
    ):
        from tistis_common.events import AppointmentRequested

        tenant = await make_tenant()
        await rows.branch(tenant.id, timezone="America/Tijuana")
        p = await rows.patient(tenant)
        clock.set(utc(2026, 10, 30, 20))  # Friday; Sunday 1 Nov 02:00 PDT becomes 01:00 PST
        async with scheduler() as runtime:
            await runtime.publisher.publish(AppointmentRequested(
                tenant_id=tenant.id, lead_id=p.lead_id, preferred_dates=["2026-11-02T09:00"]))
            [sent] = await bus.events(tenant.id, at_least=1)
        appt = await rows.val(tenant.id, "SELECT scheduled_at FROM appointments")
        assert appt == utc(2026, 11, 2, 17)  # 09:00 PST is 17:00 UTC (it was 16:00 a week before)
        assert sent.template.body_params[1:3] == ["lunes 2 de noviembre", "09:00"]


class TestCrashBetweenCommitAndPublish:
    async def test_committed_but_unpublished_reminder_is_published_by_a_later_pass(
        self, make_tenant, rows, bus, clock, deps_for, scheduler
    ):
        from tistis_scheduler.passes import decide
        from tistis_scheduler.reminders import remind

        tenant = await make_tenant()
        p = await rows.patient(tenant)
        await rows.appointment(p, at=MONDAY_9, booked_at=utc(2027, 1, 4))
        clock.set(MONDAY_9 - timedelta(hours=20))
        [lost] = await decide(deps_for(), tenant.id, remind)  # the pass's commit, then the "crash"
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            assert await bus.events(tenant.id) == []  # not yet: another replica may be publishing
            clock.advance(minutes=1)
            result = await run_pass(deps_for(runtime))
            assert (result.republished, result.reminders) == (1, 0)
            assert await bus.events(tenant.id, at_least=1) == [lost]
            await run_pass(deps_for(runtime))
            assert len(await bus.events(tenant.id)) == 1
