"""The batching publisher against the real broker: every event of many concurrent callers is
confirmed and routed exactly once; an unroutable event fails its own caller only."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Literal

import aio_pika
import pytest
from tistis_common.broker import Publisher, connect
from tistis_common.events import Event, InboundMessage, parse_event
from tistis_common.testing.plugin import temporary_vhost
from tistis_common.topology import EXCHANGE


def inbound(tenant_id: uuid.UUID, n: int) -> InboundMessage:
    return InboundMessage(tenant_id=tenant_id, channel="whatsapp", platform_account_id="1",
                          platform_user_id="5215512345678", platform_message_id=f"wamid.{n}",
                          sent_at=datetime.now(UTC), text=f"mensaje {n}")


class Stray(Event):
    """An event no queue is bound for: the broker returns it (mandatory publish)."""

    type: Literal["test.nobody_listens"] = "test.nobody_listens"


@pytest.fixture
async def scratch(settings):
    """A vhost of our own with just the exchange (no alternate exchange) and one queue copying
    `message.received.#`: an event nothing is bound for is returned by the broker."""
    async with temporary_vhost(settings.rabbitmq_management_url, settings.rabbitmq_url,
                               "tistis_publisher") as url:
        connection = await connect(url)
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        copies = await channel.declare_queue("", exclusive=True)
        await copies.bind(exchange, "message.received.#")
        yield await Publisher.open(connection), copies
        await connection.close()


async def drain(queue: aio_pika.abc.AbstractQueue, count: int) -> list:
    received = []
    async with queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            received.append(parse_event(message.body))
            if len(received) == count:
                break
    return received


async def test_concurrent_requests_are_each_confirmed_and_routed_once(scratch):
    publisher, copies = scratch
    tenant_id = uuid.uuid4()
    requests = [[inbound(tenant_id, 10 * r + i) for i in range(1 + r % 3)] for r in range(200)]
    await asyncio.gather(*(publisher.publish_all(batch) for batch in requests))
    sent = {e.event_id for batch in requests for e in batch}
    received = await asyncio.wait_for(drain(copies, len(sent)), 10)
    assert sorted(e.event_id for e in received) == sorted(sent)
    assert await copies.get(fail=False) is None  # and no more than once


async def test_an_unroutable_event_fails_only_its_own_request(scratch):
    publisher, copies = scratch
    tenant_id = uuid.uuid4()
    stray = Stray(tenant_id=tenant_id)
    results = await asyncio.gather(
        publisher.publish_all([inbound(tenant_id, 1)]),
        publisher.publish_all([stray]),
        publisher.publish_all([inbound(tenant_id, 2)]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert {e.platform_message_id for e in await drain(copies, 2)} == {"wamid.1", "wamid.2"}


async def test_published_bytes_are_the_event(scratch):
    publisher, copies = scratch
    event = inbound(uuid.uuid4(), 7)
    await publisher.publish_all([event])
    assert await drain(copies, 1) == [event]
