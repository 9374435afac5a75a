"""Reminders and bookings through a lost broker connection or channel. The scheduler holds no
claim beyond a transaction: a pass locks its due rows only while it commits the message, its
outbox event and `reminder_sent` together, then publishes; a booking handler commits its mark
and its outbox events together, then the runner publishes. So the broker closing at any point
can only delay a publish (the outbox, or the redelivery, brings the same event again), never
leave a reminder claimed with nobody to send it. Each case ends with one stored message and one
`OutboundMessage` id (the dispatcher sends an id once). Real broker and database; the
scheduler runs in-process so that the point of the break is exact.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

import pytest
from tistis_common.events import AppointmentRequested
from tistis_common.testing.plugin import (
    broker_closes_channel,
    eventually,
    force_close_connections,
    named_connections,
    running,
)
from tistis_scheduler import handlers, passes
from tistis_scheduler.main import start
from tistis_scheduler.passes import run_pass

from .test_reminders import MONDAY_9, reminder_rows, utc


async def reconnected(runtime) -> None:
    await eventually(lambda: asyncio.sleep(0, not runtime.publisher.channel.is_closed))


@pytest.fixture
async def due_reminder(make_tenant, rows, clock):
    """A tenant with an appointment whose reminder is due now (the clock 20 h before it)."""
    tenant = await make_tenant()
    await rows.appointment(await rows.patient(tenant), at=MONDAY_9, booked_at=utc(2027, 1, 4))
    clock.set(MONDAY_9 - timedelta(hours=20))
    return tenant


def mine(errors: list[str], tenant) -> list[str]:
    return [e for e in errors if e.startswith(str(tenant.id))]


class TestReminderThroughABrokerLoss:
    async def test_connection_lost_right_after_the_commit_is_published_by_a_later_pass(
        self, settings, due_reminder, rows, bus, clock, deps_for, monkeypatch
    ):
        tenant = due_reminder
        named = named_connections(settings, "scheduler")
        publish = passes._publish

        async def lose_then_publish(deps, tenant_id, events):
            if tenant_id == tenant.id and events:
                await force_close_connections(named)  # committed, not yet published
            await publish(deps, tenant_id, events)

        async with running(partial(start, now=clock), named, scheduler_tick_seconds=0) as runtime:
            monkeypatch.setattr(passes, "_publish", lose_then_publish)
            failed = await run_pass(deps_for(runtime))  # (other tests' tenants are visited too)
            monkeypatch.setattr(passes, "_publish", publish)
            assert len(mine(failed.errors, tenant)) == 1
            await reconnected(runtime)
            await run_pass(deps_for(runtime))
            assert await bus.events(tenant.id) == []  # committed: not again, nor yet republished
            clock.advance(seconds=settings.scheduler_outbox_grace_seconds)
            await run_pass(deps_for(runtime))
            sent = await bus.events(tenant.id, at_least=1)
            await run_pass(deps_for(runtime))
        assert len(await bus.events(tenant.id)) == 1
        [row] = await reminder_rows(rows, tenant.id)
        assert sent[0].message_id == row["id"]

    async def test_connection_lost_right_after_the_publish_still_records_it_published(
        self, settings, due_reminder, rows, bus, clock, deps_for, monkeypatch
    ):
        tenant = due_reminder
        named = named_connections(settings, "scheduler")
        async with running(partial(start, now=clock), named, scheduler_tick_seconds=0) as runtime:
            publish_all = runtime.publisher.publish_all

            async def publish_then_lose(events):
                await publish_all(events)  # confirmed by the broker
                if any(e.tenant_id == tenant.id for e in events):
                    await force_close_connections(named)

            monkeypatch.setattr(runtime.publisher, "publish_all", publish_then_lose)
            result = await run_pass(deps_for(runtime))
            monkeypatch.setattr(runtime.publisher, "publish_all", publish_all)
            assert mine(result.errors, tenant) == []
            await bus.events(tenant.id, at_least=1)
            await reconnected(runtime)
            clock.advance(seconds=settings.scheduler_outbox_grace_seconds)
            await run_pass(deps_for(runtime))  # recorded as published: nothing to republish
        assert len(await bus.events(tenant.id)) == 1
        assert len(await reminder_rows(rows, tenant.id)) == 1


class TestBookingThroughABrokerLoss:
    async def test_channel_closed_right_after_the_booking_committed_confirms_once(
        self, settings, make_tenant, rows, bus, clock, monkeypatch
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant, last_inbound_at=clock())
        run = handlers._run
        cancelled: list[bool] = []
        channel: list[object] = []

        async def commit_then_close(consumer, event, req, deps):
            events = await run(consumer, event, req, deps)
            if not cancelled:  # booked and committed; the runner has not published nor acked
                cancelled.append(False)
                await broker_closes_channel(channel[0])
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    cancelled[0] = True
                    raise
            return events

        monkeypatch.setattr(handlers, "_run", commit_then_close)
        async with running(partial(start, now=clock), settings, scheduler_tick_seconds=0) as runtime:
            channel.append(next(c for c in runtime.consumers
                                if c.spec.name == "scheduler.requests")._channel)
            await runtime.publisher.publish(AppointmentRequested(
                tenant_id=tenant.id, lead_id=p.lead_id, conversation_id=p.conversation_id,
                service_name="limpieza", preferred_dates=["2027-01-11"], source="ai"))
            first = await bus.events(tenant.id, at_least=1)
            await asyncio.sleep(0.5)  # a second booking, if any, would be published by now
        assert cancelled == [True]
        sent = await bus.events(tenant.id)
        assert {e.message_id for e in sent} == {first[0].message_id}
        assert await rows.val(tenant.id, "SELECT count(*) FROM appointments") == 1
        assert await rows.val(tenant.id, "SELECT count(*) FROM messages WHERE direction = 'outbound'") == 1
