"""What RabbitMQ 4.x changed for us, on the real broker (`make test-rabbitmq4` runs these against
4.0 too): quorum queues get a default delivery limit of 20 there
(https://www.rabbitmq.com/docs/quorum-queues#poison-message-handling), so a dead letter peeked
by get-and-requeue (`tistis dlq list/show`) would be dropped after about 20 looks unless the
`tistis-dlq` policy lifts the limit; and retry queues moved from classic to quorum queues, with a
path for brokers that still hold the old classic ones."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import httpx
from tistis_common.broker import connect
from tistis_common.management import ManagementApi, broker_major_version
from tistis_common.testing.plugin import eventually
from tistis_common.topology import QueueSpec, declare_topology, drop_legacy_retry_queues

PEEKS = 25  # more than 4.x's default delivery limit of 20


async def peek_and_requeue(channel: aio_pika.abc.AbstractChannel, queue: str, times: int) -> bool:
    """What `tistis dlq show` does, `times` over; True if the message is still there after."""
    q = await channel.get_queue(queue)
    for _ in range(times):
        message = await q.get(fail=False)
        if message is None:
            return False
        await message.nack(requeue=True)
    return await q.get(fail=False) is not None


async def major_version(settings) -> int:
    api = ManagementApi.from_url(settings.rabbitmq_management_url)
    async with httpx.AsyncClient(base_url=api.base_url, auth=api.auth) as http:
        return await broker_major_version(http)


class TestDeadLetterQueues:
    async def test_a_dead_letter_looked_at_25_times_is_still_there(self, settings):
        spec = QueueSpec(f"test.keep.{uuid.uuid4().hex[:8]}", ())
        connection = await connect(settings.rabbitmq_url)
        channel = await connection.channel()
        try:
            await declare_topology(channel, [], queues=[spec])
            # Not a .dlq: no policy, the broker's default limit applies (none before 4.0).
            await channel.declare_queue(f"{spec.name}.probe", durable=True,
                                        arguments={"x-queue-type": "quorum"})
            for queue in (spec.dlq, f"{spec.name}.probe"):
                await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue)
            assert await peek_and_requeue(channel, spec.dlq, PEEKS)
            # The test is not vacuous: on 4.x the same looks drop a message without the policy.
            kept_without_policy = await peek_and_requeue(channel, f"{spec.name}.probe", PEEKS)
            assert kept_without_policy is (await major_version(settings) < 4)
        finally:
            for queue in (spec.name, spec.dlq, f"{spec.name}.probe"):
                await channel.queue_delete(queue)
            await connection.close()


class TestRetryQueues:
    async def test_retry_queues_are_quorum_queues(self, settings):
        spec = QueueSpec(f"test.qq.{uuid.uuid4().hex[:8]}", ())
        connection = await connect(settings.rabbitmq_url)
        channel = await connection.channel()
        try:
            await declare_topology(channel, [0.2], queues=[spec])
            api = ManagementApi.from_url(settings.rabbitmq_management_url)
            vhost = settings.rabbitmq_url.rsplit("/", 1)[1]
            async with httpx.AsyncClient(base_url=api.base_url, auth=api.auth) as http:
                info = (await http.get(f"/api/queues/{vhost}/{spec.retry_queue(0.2)}")).json()
            assert info["type"] == "quorum"
            assert info["arguments"]["x-dead-letter-strategy"] == "at-least-once"
        finally:
            for queue in (spec.name, spec.dlq, spec.retry_queue(0.2)):
                await channel.queue_delete(queue)
            await connection.close()

    async def test_old_classic_retry_queues_drain_into_their_queue_then_go(self, settings):
        spec = QueueSpec(f"test.legacy.{uuid.uuid4().hex[:8]}", ())
        connection = await connect(settings.rabbitmq_url)
        channel = await connection.channel()
        try:
            await declare_topology(channel, [], queues=[spec])
            # What a broker of the previous version holds: classic, TTL, dead-letter to the queue.
            for delay in (0.5, 60.0):
                await channel.declare_queue(spec.legacy_retry_queue(delay), durable=True, arguments={
                    "x-message-ttl": int(delay * 1000), "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": spec.name})
            await channel.default_exchange.publish(aio_pika.Message(b'{"parked": 1}'),
                                                   routing_key=spec.legacy_retry_queue(0.5))
            # the new topology declares next to them without a clash; the empty one goes at once
            await declare_topology(channel, [0.5, 60.0], queues=[spec])
            waiting = await drop_legacy_retry_queues(connection, [0.5, 60.0], queues=[spec])
            assert waiting in ([spec.legacy_retry_queue(0.5)], [])  # [] if it expired already
            work = await channel.get_queue(spec.name)

            async def arrived():
                return await work.get(fail=False)

            message = await eventually(arrived, timeout=10)
            assert message.body == b'{"parked": 1}'
            await asyncio.sleep(0.2)
            assert await drop_legacy_retry_queues(connection, [0.5, 60.0], queues=[spec]) == []
            probe = await connection.channel()
            try:
                await probe.declare_queue(spec.legacy_retry_queue(0.5), passive=True)
                raise AssertionError("the drained classic retry queue is still there")
            except aio_pika.exceptions.ChannelNotFoundEntity:
                pass
        finally:
            for queue in (spec.name, spec.dlq, spec.retry_queue(0.5), spec.retry_queue(60.0),
                          spec.legacy_retry_queue(0.5), spec.legacy_retry_queue(60.0)):
                await channel.queue_delete(queue)
            await connection.close()
