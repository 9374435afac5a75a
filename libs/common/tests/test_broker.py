import asyncio
import uuid
from datetime import UTC, datetime
from functools import partial

import aio_pika
import pytest
from tistis_common.broker import (
    H_ATTEMPT,
    H_ERROR,
    H_ORIGINAL_KEY,
    H_WAITS,
    Consumer,
    PermanentError,
    Publisher,
    RetryAfter,
    WaitForClaim,
    connect,
    handled_types,
)
from tistis_common.events import Channel, Event, InboundMessage, MessageStatus, OutboundMessage
from tistis_common.topology import QueueSpec, declare_topology


def event() -> InboundMessage:
    return InboundMessage(
        tenant_id=uuid.uuid4(), channel=Channel.TIKTOK, platform_account_id="acc",
        platform_user_id="u", platform_message_id=uuid.uuid4().hex, sent_at=datetime.now(UTC),
        text="hola",
    )


@pytest.fixture
async def broker(settings):
    connection = await connect(settings.rabbitmq_url)
    # A queue of this test's own, bound to the same exchange as the real ones.
    spec = QueueSpec(f"test.{uuid.uuid4().hex[:8]}", ("message.received.tiktok",))
    channel = await connection.channel()
    await declare_topology(channel, settings.retry_delays)
    await declare_topology(channel, settings.retry_delays, queues=[spec])
    publisher = await Publisher.open(connection)
    yield connection, spec, publisher, channel
    for name in (spec.name, spec.dlq, *(spec.retry_queue(d) for d in settings.retry_delays)):
        await channel.queue_delete(name)
    await connection.close()


async def get_one(channel, queue: str, timeout: float = 10) -> aio_pika.abc.AbstractIncomingMessage:
    q = await channel.get_queue(queue)
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await q.get(fail=False)
        if message:
            await message.ack()
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing arrived in {queue}")


class TestConsumer:
    async def test_handled_event_is_acked_once(self, settings, broker):
        connection, spec, publisher, channel = broker
        seen = []

        async def handler(e):
            seen.append(e.event_id)
            return []

        consumer = Consumer(connection, spec, handler, publisher, prefetch=4, retry_delays=[0.1])
        await consumer.start()
        sent = event()
        await publisher.publish(sent)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        await consumer.stop(grace=2)
        assert seen == [sent.event_id]
        assert (await channel.get_queue(spec.name)).declaration_result.message_count == 0

    async def test_a_handler_gets_only_the_event_types_it_names(self, settings, broker):
        connection, spec, publisher, channel = broker
        seen = []

        async def handler(e: MessageStatus, deps: object) -> list:
            seen.append(e)
            return []

        consumer = Consumer(connection, spec, partial(handler, deps=None), publisher, prefetch=4,
                            retry_delays=[0.1])
        await consumer.start()
        await publisher.publish(event())  # an InboundMessage: not this handler's
        await asyncio.sleep(0.5)
        await consumer.stop(grace=2)
        assert seen == []
        assert (await channel.get_queue(spec.name)).declaration_result.message_count == 0

    async def test_event_that_keeps_failing_ends_in_the_dlq_with_its_error(self, settings, broker):
        connection, spec, publisher, channel = broker
        attempts = []

        async def handler(e):
            attempts.append(e.event_id)
            raise RuntimeError("database said no")

        consumer = Consumer(connection, spec, handler, publisher, prefetch=4,
                            retry_delays=settings.retry_delays)
        await consumer.start()
        sent = event()
        await publisher.publish(sent)
        dead = await get_one(channel, spec.dlq)
        await consumer.stop(grace=2)
        assert len(attempts) == len(settings.retry_delays) + 1
        assert dead.headers[H_ATTEMPT] == len(settings.retry_delays) + 1
        assert "RuntimeError: database said no" in dead.headers[H_ERROR]
        assert dead.headers[H_ORIGINAL_KEY] == "message.received.tiktok"
        assert dead.message_id == str(sent.event_id)

    async def test_retry_after_waits_at_least_as_long_as_the_other_side_asked(self, settings,
                                                                               broker):
        connection, spec, publisher, _ = broker
        seen: list[float] = []
        again = asyncio.Event()

        async def handler(e):
            seen.append(asyncio.get_running_loop().time())
            if len(seen) == 1:
                raise RetryAfter("429 from the model", seconds=0.4)
            again.set()
            return []

        # The first delay (0.2 s) is shorter than asked: the retry takes the 0.5 s queue instead.
        assert settings.retry_delays == [0.2, 0.5]
        consumer = Consumer(connection, spec, handler, publisher, prefetch=4,
                            retry_delays=settings.retry_delays)
        await consumer.start()
        await publisher.publish(event())
        await asyncio.wait_for(again.wait(), timeout=10)
        await consumer.stop(grace=2)
        assert len(seen) == 2 and seen[1] - seen[0] >= 0.45

    async def test_waiting_for_a_claim_spends_no_attempt(self, settings, broker):
        connection, spec, publisher, channel = broker
        headers: list[dict] = []
        done = asyncio.Event()
        waits = len(settings.retry_delays) + 3  # more than the attempts allow

        async def handler(e):
            if len(headers) <= waits:
                raise WaitForClaim("another worker holds it", seconds=0.3)
            done.set()
            return []

        consumer = Consumer(connection, spec, handler, publisher, prefetch=4,
                            retry_delays=settings.retry_delays)
        original = consumer._process

        async def seen(message):
            headers.append(dict(message.headers or {}))
            await original(message)

        consumer._process = seen  # type: ignore[method-assign]
        await consumer.start()
        await publisher.publish(event())
        await asyncio.wait_for(done.wait(), timeout=20)
        await consumer.stop(grace=2)
        # Never dead-lettered, the attempt never counted; the delays grow only up to the
        # first queue that covers the claim's 0.3 s (0.5 s here).
        assert [h.get(H_ATTEMPT, 0) for h in headers] == [0] * (waits + 1)
        assert [h.get(H_WAITS, 0) for h in headers] == list(range(waits + 1))
        assert (await channel.declare_queue(spec.dlq, passive=True)
                ).declaration_result.message_count == 0

    async def test_permanent_error_skips_the_retries(self, settings, broker):
        connection, spec, publisher, channel = broker
        calls = []

        async def handler(e):
            calls.append(1)
            raise PermanentError("no such conversation")

        consumer = Consumer(connection, spec, handler, publisher, prefetch=4, retry_delays=[5.0])
        await consumer.start()
        await publisher.publish(event())
        dead = await get_one(channel, spec.dlq)
        await consumer.stop(grace=2)
        assert calls == [1]
        assert dead.headers[H_ATTEMPT] == 1

    async def test_a_body_that_is_not_an_event_is_dead_lettered(self, settings, broker):
        connection, spec, publisher, channel = broker

        async def handler(e):
            raise AssertionError("never called")

        consumer = Consumer(connection, spec, handler, publisher, prefetch=4, retry_delays=[0.1])
        await consumer.start()
        await publisher.channel.default_exchange.publish(
            aio_pika.Message(b'{"not": "an event"}'), routing_key=spec.name
        )
        dead = await get_one(channel, spec.dlq)
        await consumer.stop(grace=2)
        assert "ValidationError" in dead.headers[H_ERROR]

    async def test_stop_finishes_the_event_in_hand(self, settings, broker):
        connection, spec, publisher, channel = broker
        started, finished = asyncio.Event(), []

        async def handler(e):
            started.set()
            await asyncio.sleep(0.5)
            finished.append(e.event_id)
            return []

        consumer = Consumer(connection, spec, handler, publisher, prefetch=4, retry_delays=[0.1])
        await consumer.start()
        sent = event()
        await publisher.publish(sent)
        await asyncio.wait_for(started.wait(), 10)
        await consumer.stop(grace=5)
        assert finished == [sent.event_id]
        q = await channel.declare_queue(spec.name, passive=True)
        assert q.declaration_result.message_count == 0


class TestHandledTypes:
    def test_read_from_the_first_parameter_through_partial_and_unions(self):
        async def one(e: OutboundMessage, deps): ...
        async def either(e: InboundMessage | MessageStatus): ...
        async def untyped(e): ...

        assert handled_types(partial(one, deps=None)) == (OutboundMessage,)
        assert handled_types(either) == (InboundMessage, MessageStatus)
        assert handled_types(untyped) == (Event,)

    def test_a_first_parameter_typed_with_something_else_is_refused_at_start(self):
        async def wrong(e: int): ...

        with pytest.raises(TypeError):
            handled_types(wrong)


class TestUnroutedEvents:
    async def test_an_event_no_queue_listens_to_is_parked_not_failed(self, settings, broker):
        from tistis_common.broker import event_message
        from tistis_common.topology import UNROUTED

        _connection, _spec, publisher, channel = broker
        message = event_message(event())
        # Published with `mandatory` and confirms, as Publisher does, to a key nobody binds.
        await publisher.exchange.publish(message, routing_key="nobody.listens.here", mandatory=True)
        parked = [(await get_one(channel, UNROUTED)).message_id]
        while parked[-1] != message.message_id:  # other tests may have parked events too
            parked.append((await get_one(channel, UNROUTED)).message_id)

    async def test_a_realtime_event_nobody_listens_to_is_dropped_not_parked(self, settings, broker):
        """`lead.created` is for the realtime feed only: with no feed listening it goes to the
        queueless broadcast exchange, not into `tistis.unrouted` (one per new patient)."""
        from tistis_common.broker import event_message
        from tistis_common.topology import UNROUTED

        _connection, _spec, publisher, channel = broker
        created = event_message(event())
        await publisher.exchange.publish(created, routing_key="lead.created", mandatory=True)
        marker = event_message(event())  # a key nobody binds: parked, after the one above
        await publisher.exchange.publish(marker, routing_key="nobody.listens.here", mandatory=True)
        parked = [(await get_one(channel, UNROUTED)).message_id]
        while parked[-1] != marker.message_id:
            parked.append((await get_one(channel, UNROUTED)).message_id)
        assert created.message_id not in parked


class TestPublisherAway:
    async def test_a_delivery_whose_retry_cannot_be_published_goes_back_to_the_queue(
            self, settings, broker):
        """After a lost connection the consumer's channel may be back before the publisher's:
        the handler's events and then its retry both fail to publish. The delivery is requeued
        (not left unacknowledged until the next disconnect) and handled once the publisher
        is back."""
        connection, spec, publisher, channel = broker
        away = await Publisher.open(connection)
        await away.channel.close()  # every publish through it fails
        seen: list[uuid.UUID] = []
        done = asyncio.Event()

        async def handler(e):
            seen.append(e.event_id)
            if len(seen) > 1:
                consumer.publisher = publisher  # back
                done.set()
            return [event()]

        consumer = Consumer(connection, spec, handler, away, prefetch=4, retry_delays=[0.1])
        await consumer.start()
        sent = event()
        await publisher.publish(sent)
        await asyncio.wait_for(done.wait(), timeout=20)
        await consumer.stop(grace=5)
        assert seen == [sent.event_id, sent.event_id]
        q = await channel.declare_queue(spec.name, passive=True)
        assert q.declaration_result.message_count == 0
