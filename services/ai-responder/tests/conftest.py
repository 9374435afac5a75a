"""Fixtures: the sandbox's fake Anthropic API on a real socket, a way to publish patient
messages as ingress does, and a queue of the test's own that sees what the responder publishes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest
from tistis_common.broker import Publisher, connect
from tistis_common.events import Channel, Event, InboundMessage, parse_event
from tistis_common.settings import Settings
from tistis_common.testing.plugin import own_vhost, tap_events

OBSERVED = ("message.outbound.*", "conversation.escalated", "lead.signals", "lead.created",
            "appointment.requested")


@pytest.fixture
def ai_settings(settings, sandbox_url):
    """Fast bursts and a key for the fake; tests override what they exercise."""
    return {"anthropic_api_key": "sk-ant-test", "anthropic_base_url": sandbox_url,
            "ai_debounce_seconds": 0.2, "ai_sdk_max_retries": 1, "ai_timeout_seconds": 5}


class Bus:
    """Publishes events like the other services do and collects what the responder publishes."""

    def __init__(self, publisher: Publisher, queue: aio_pika.abc.AbstractQueue):
        self.publisher = publisher
        self.queue = queue
        self.seen: list[Event] = []

    async def publish(self, event: Event) -> None:
        await self.publisher.publish(event)

    async def _drain(self) -> None:
        while (message := await self.queue.get(fail=False)) is not None:
            await message.ack()
            self.seen.append(parse_event(message.body))

    async def events(self, tenant_id: uuid.UUID, kind: str | None = None) -> list[Event]:
        await self._drain()
        return [e for e in self.seen
                if e.tenant_id == tenant_id and (kind is None or e.type == kind)]  # type: ignore[attr-defined]

    async def wait(self, tenant_id: uuid.UUID, kind: str, count: int = 1,
                   timeout: float = 10) -> list[Event]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await self.events(tenant_id, kind)
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{count} x {kind} not published within {timeout}s: {found}")
            await asyncio.sleep(0.05)


async def _bus(settings: Settings) -> AsyncIterator[Bus]:
    connection = await connect(settings.rabbitmq_url)
    queue = await tap_events(connection, settings, *OBSERVED)
    publisher = await Publisher.open(connection)
    yield Bus(publisher, queue)
    await connection.close()


@pytest.fixture
async def bus(settings) -> AsyncIterator[Bus]:
    async for b in _bus(settings):
        yield b


@pytest.fixture
async def own(settings) -> AsyncIterator[tuple[Settings, Bus]]:
    """Settings on a vhost of the test's own (nothing left over by other tests), and its bus."""
    async with own_vhost(settings) as own_settings:
        async for b in _bus(own_settings):
            yield own_settings, b


@pytest.fixture
def patient_message():
    """Builds an InboundMessage as ingress publishes it (deterministic event id)."""
    return _patient_message


def _patient_message(tenant, text: str, *, user: str = "5215512345678",
                    channel: Channel = Channel.WHATSAPP, sender_type: str = "lead",
                    message_id: str | None = None) -> InboundMessage:
    account = getattr(tenant, {Channel.WHATSAPP: "whatsapp_phone_number_id",
                               Channel.INSTAGRAM: "instagram_account_id",
                               Channel.FACEBOOK: "page_id",
                               Channel.TIKTOK: "tiktok_business_id"}[channel])
    platform_id = message_id or f"wamid.{uuid.uuid4().hex}"
    return InboundMessage(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}:{platform_id}"),
        tenant_id=tenant.id, channel=channel, platform_account_id=account,
        platform_user_id=user, platform_message_id=platform_id, sent_at=datetime.now(UTC),
        text=text, display_name="María García", phone="+" + user,
        sender_type=sender_type,  # type: ignore[arg-type]
    )
