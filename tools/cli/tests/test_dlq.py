"""`tistis dlq ...` against real RabbitMQ: a consumer of the test's own, on the real Consumer
runner, whose handler fails until its cause is fixed; its effect is recorded idempotently in
processed_events, as real consumers do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from tistis_cli import deadletters as dl
from tistis_common.broker import Consumer, PermanentError, Publisher, connect
from tistis_common.db import tenant_tx
from tistis_common.events import Channel, LeadCreated
from tistis_common.testing.plugin import eventually
from tistis_common.topology import QueueSpec, declare_topology

from .conftest import json_of


@dataclass
class Flaky:
    """`broken`: fails before doing anything. `crash_after_commit`: does the work, then fails."""

    pool: object
    broken: bool = True
    crash_after_commit: bool = False
    effects: list[uuid.UUID] = field(default_factory=list)
    calls: int = 0

    async def handle(self, event):
        self.calls += 1
        if self.broken:
            raise RuntimeError("cause not fixed yet")
        async with tenant_tx(self.pool, event.tenant_id) as conn:
            first = await conn.fetchval(
                """INSERT INTO processed_events (consumer, event_id, tenant_id) VALUES ('test-flaky', $1, $2)
                   ON CONFLICT DO NOTHING RETURNING true""", event.event_id, event.tenant_id)
        if first:
            self.effects.append(event.event_id)
        if self.crash_after_commit:
            raise PermanentError("crashed after the commit")
        return []


@pytest.fixture
async def flaky(settings, app_pool):
    connection = await connect(settings.rabbitmq_url)
    spec = QueueSpec(f"test.flaky.{uuid.uuid4().hex[:8]}", ("lead.created",))
    channel = await connection.channel()
    await declare_topology(channel, settings.retry_delays, queues=[spec])
    publisher = await Publisher.open(connection)
    handler = Flaky(app_pool)
    consumer = Consumer(connection, spec, handler.handle, publisher, prefetch=10,
                        retry_delays=settings.retry_delays)
    await consumer.start()
    yield spec, handler, publisher, connection
    await consumer.stop(grace=2)
    for name in (spec.name, spec.dlq, *(spec.retry_queue(d) for d in settings.retry_delays)):
        await channel.queue_delete(name)
    await connection.close()


def lead(tenant_id) -> LeadCreated:
    return LeadCreated(tenant_id=tenant_id, lead_id=uuid.uuid4(), channel=Channel.TIKTOK, name="x")


async def dead(connection, spec) -> int:
    return await dl.depth(connection, spec.dlq) or 0


async def processed(app_pool, tenant_id, event_id) -> int:
    async with tenant_tx(app_pool, tenant_id) as conn:
        return await conn.fetchval("SELECT count(*) FROM processed_events WHERE event_id = $1", event_id)


class TestReplay:
    async def test_poisoned_message_replayed_after_the_fix_is_processed_once(
        self, tistis, flaky, make_tenant, app_pool
    ):
        spec, handler, publisher, connection = flaky
        tenant = await make_tenant()
        event = lead(tenant.id)
        await publisher.publish(event)
        await eventually(lambda: dead(connection, spec))  # after 1 try + 2 retries
        assert handler.calls == 3

        listed = await tistis("dlq", "list", "-q", spec.name, "--json")
        assert listed.exit_code == 0, listed.output
        [row] = json_of(listed.output)
        assert (row["queue"], row["count"], row["errors"]) == (spec.dlq, 1, {"RuntimeError": 1})
        assert row["oldest"] is not None

        shown = await tistis("dlq", "show", str(event.event_id), "-q", spec.dlq)
        assert shown.exit_code == 0, shown.output
        letter = json_of(shown.output)
        assert (letter["attempts"], letter["error_type"], letter["original_queue"]) == (
            3, "RuntimeError", spec.name)
        assert letter["error"] == "RuntimeError: cause not fixed yet"
        assert letter["original_routing_key"] == "lead.created"
        assert letter["body"]["event_id"] == str(event.event_id)
        assert letter["headers"]["tenant_id"] == str(tenant.id)

        everything = await tistis("dlq", "list", "--json")  # no -q: the topology's + discovered
        names = [r["queue"] for r in json_of(everything.output)]
        assert "ai-responder.inbound.dlq" in names and spec.dlq in names

        dry = await tistis("dlq", "replay", str(event.event_id), "-q", spec.name, "--dry-run")
        assert dry.exit_code == 0 and "would replay: 1" in dry.output
        assert await dead(connection, spec) == 1  # listing, showing, dry run: nothing removed
        assert handler.calls == 3

        handler.broken = False  # the cause is fixed
        replayed = await tistis("dlq", "replay", str(event.event_id), "-q", spec.name)
        assert replayed.exit_code == 0, replayed.output
        assert f"replayed {event.event_id} from {spec.dlq} to {spec.name}" in replayed.output
        await eventually(lambda: _value(handler.effects))
        assert handler.effects == [event.event_id]
        assert await processed(app_pool, tenant.id, event.event_id) == 1
        assert await dead(connection, spec) == 0

    async def test_replaying_what_was_already_processed_changes_nothing(
        self, tistis, flaky, make_tenant, app_pool
    ):
        spec, handler, publisher, connection = flaky
        tenant = await make_tenant()
        handler.broken, handler.crash_after_commit = False, True  # did the work, then died
        event = lead(tenant.id)
        await publisher.publish(event)
        await eventually(lambda: dead(connection, spec))
        assert handler.effects == [event.event_id]

        handler.crash_after_commit = False
        calls = handler.calls
        result = await tistis("dlq", "replay", "--all", "-q", spec.name)
        assert result.exit_code == 0, result.output
        await eventually(lambda: _value(handler.calls > calls))
        assert handler.effects == [event.event_id]
        assert await processed(app_pool, tenant.id, event.event_id) == 1
        assert await dead(connection, spec) == 0

    async def test_filters_by_tenant_and_error_type(self, tistis, flaky, make_tenant):
        spec, handler, publisher, connection = flaky
        a, b = await make_tenant(), await make_tenant()
        handler.broken = False
        handler.crash_after_commit = True  # PermanentError
        ea = lead(a.id)
        await publisher.publish(ea)
        await eventually(lambda: dead(connection, spec))
        handler.crash_after_commit, handler.broken = False, True  # RuntimeError
        eb = lead(b.id)
        await publisher.publish(eb)
        await eventually(lambda: _equals(dead(connection, spec), 2))
        handler.broken = False

        result = await tistis("dlq", "replay", "--tenant", b.slug, "-q", spec.name)
        assert result.exit_code == 0, result.output
        assert str(eb.event_id) in result.output and str(ea.event_id) not in result.output
        # The skipped one is put back with a publish: the queue's count can lag it a moment.
        await eventually(lambda: _equals(dead(connection, spec), 1))
        result = await tistis("dlq", "replay", "--error-type", "RuntimeError", "-q", spec.name)
        assert "replayed: 0" in result.output
        result = await tistis("dlq", "replay", "--error-type", "PermanentError", "-q", spec.name,
                              "--to", "exchange")
        assert "to tistis.events:lead.created" in result.output
        await eventually(lambda: _equals(dead(connection, spec), 0))

    async def test_a_replay_needs_a_selection(self, tistis):
        result = await tistis("dlq", "replay")
        assert (result.exit_code, result.output.strip()) == (
            2, "error: say what: an event id, --error-type, --tenant, or --all")
        result = await tistis("dlq", "replay", "--all", "--tenant", "x")
        assert result.exit_code == 2
        result = await tistis("dlq", "replay", str(uuid.uuid4()), "-q", "no.such.queue")
        assert result.exit_code == 1


class TestPurge:
    async def test_purge_asks_first_and_deletes_only_when_confirmed(self, tistis, flaky, make_tenant):
        spec, _handler, publisher, connection = flaky
        tenant = await make_tenant()
        for _ in range(2):
            await publisher.publish(lead(tenant.id))
        await eventually(lambda: _equals(dead(connection, spec), 2))

        refused = await tistis("dlq", "purge", "--all", "-q", spec.name, input="n\n")
        assert refused.exit_code == 1
        assert await dead(connection, spec) == 2
        done = await tistis("dlq", "purge", "--all", "-q", spec.name, "--yes")
        assert done.exit_code == 0, done.output
        assert "purged: 2" in done.output
        assert await dead(connection, spec) == 0

    async def test_purge_one_by_id(self, tistis, flaky, make_tenant):
        spec, _handler, publisher, connection = flaky
        tenant = await make_tenant()
        keep, drop = lead(tenant.id), lead(tenant.id)
        await publisher.publish(keep)
        await publisher.publish(drop)
        await eventually(lambda: _equals(dead(connection, spec), 2))
        done = await tistis("dlq", "purge", str(drop.event_id), "-q", spec.name, "-y")
        assert "purged: 1" in done.output
        # The kept one is requeued by a nack the broker applies asynchronously.
        await eventually(lambda: _equals(dead(connection, spec), 1))
        peeked = await dl.peek(connection, spec.dlq)
        assert [d.message_id for d in peeked[1]] == [str(keep.event_id)]


async def _equals(value_coro, expected) -> bool:
    return (await value_coro) == expected


async def _value(value):
    return value
