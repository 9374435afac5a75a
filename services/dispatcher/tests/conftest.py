"""The dispatcher in-process against the real RabbitMQ and PostgreSQL of the session, sending
to the sandbox's fake platforms on a real socket. Tests publish `OutboundMessage` events after
inserting the lead and conversation they refer to, as the AI responder would have."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import pytest
from tistis_common.broker import Publisher, connect
from tistis_common.db import tenant_tx
from tistis_common.events import Event, OutboundMessage
from tistis_common.secrets import DEV_KEY, SecretBox
from tistis_common.settings import Settings
from tistis_common.testing.plugin import TestTenant, running
from tistis_dispatcher.main import start


@pytest.fixture(scope="session")
def dispatcher_settings(settings: Settings, sandbox_url: str) -> Settings:
    return settings.model_copy(update={
        "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
        "instagram_api_base_url": sandbox_url,
        "dispatcher_max_inline_wait_seconds": 1.0, "dispatcher_http_timeout_seconds": 1.0,
    })


@pytest.fixture(scope="session")
async def dispatcher(dispatcher_settings: Settings) -> AsyncIterator[Any]:
    async with running(start, dispatcher_settings) as runtime:
        yield runtime


@pytest.fixture(scope="session")
async def amqp(settings: Settings, dispatcher: Any) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await connect(settings.rabbitmq_url)
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection) -> Publisher:
    return await Publisher.open(amqp)


@dataclass(frozen=True)
class Conversation:
    tenant: TestTenant
    channel: str
    lead_id: uuid.UUID
    conversation_id: uuid.UUID
    recipient: str  # wa_id / PSID / IGSID / TikTok user id
    tiktok_conversation_id: str | None


class Clinic:
    """Rows the dispatcher reads, written as the AI responder and ingress would."""

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher):
        self.pool = pool
        self.publisher = publisher

    async def conversation(self, tenant: TestTenant, channel: str, *,
                           last_inbound: timedelta | None = timedelta(minutes=5)) -> Conversation:
        recipient = (f"521{random.randrange(10**9, 10**10)}" if channel == "whatsapp"
                     else f"{channel}-user-{uuid.uuid4().hex[:12]}")
        account = {"whatsapp": tenant.whatsapp_phone_number_id,
                   "instagram": tenant.instagram_account_id, "facebook": tenant.page_id,
                   "tiktok": tenant.tiktok_business_id}[channel]
        tt_conversation = f"conv-{uuid.uuid4().hex}" if channel == "tiktok" else None
        last = datetime.now(UTC) - last_inbound if last_inbound is not None else None
        async with tenant_tx(self.pool, tenant.id) as conn:
            lead_id = await conn.fetchval(
                """INSERT INTO leads (tenant_id, channel, platform_user_id, name, last_inbound_at)
                   VALUES ($1, $2, $3, 'María García', $4) RETURNING id""",
                tenant.id, channel, recipient, last)
            conversation_id = await conn.fetchval(
                """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                              platform_conversation_id, last_inbound_at)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                tenant.id, lead_id, channel, account, tt_conversation, last)
        return Conversation(tenant, channel, lead_id, conversation_id, recipient, tt_conversation)

    async def inbound(self, conv: Conversation, text: str) -> None:
        """A patient message as the AI responder stores it."""
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            await conn.execute(
                """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                         sender_type, content, platform_message_id, status)
                   VALUES ($1, $2, $3, $4, 'inbound', 'lead', $5, $6, 'received')""",
                conv.tenant.id, conv.conversation_id, conv.lead_id, conv.channel, text,
                f"in-{uuid.uuid4().hex}")

    def outbound(self, conv: Conversation, **fields: Any) -> OutboundMessage:
        fields.setdefault("text", "¡Hola! Con gusto te ayudo a agendar tu cita.")
        fields.setdefault("recipient_id", conv.recipient)
        return OutboundMessage(
            tenant_id=conv.tenant.id, channel=conv.channel, message_id=uuid.uuid4(),
            conversation_id=conv.conversation_id, lead_id=conv.lead_id, **fields,
        )

    async def publish(self, *events: Event) -> None:
        await self.publisher.publish_all(events)

    async def claimed(self, conv: Conversation, event: OutboundMessage, claimer: int) -> None:
        """The event's row as a dispatcher with the lease key `claimer` left it: `sending`."""
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            await conn.execute(
                """INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel,
                                         direction, sender_type, content, status, claimed_by)
                   VALUES ($1, $2, $3, $4, $5, 'outbound', 'ai', 'hola', 'sending', $6)""",
                event.message_id, conv.tenant.id, conv.conversation_id, conv.lead_id,
                conv.channel, claimer)

    async def message(self, conv: Conversation, message_id: uuid.UUID) -> asyncpg.Record | None:
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            return await conn.fetchrow("SELECT * FROM messages WHERE id = $1", message_id)

    async def status_of(self, conv: Conversation, message_id: uuid.UUID) -> str | None:
        row = await self.message(conv, message_id)
        return row["status"] if row else None

    async def conversation_row(self, conv: Conversation) -> asyncpg.Record:
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            return await conn.fetchrow("SELECT * FROM conversations WHERE id = $1",
                                       conv.conversation_id)

    async def lead_row(self, conv: Conversation) -> asyncpg.Record:
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            return await conn.fetchrow("SELECT * FROM leads WHERE id = $1", conv.lead_id)

    async def connection_row(self, conv: Conversation) -> asyncpg.Record:
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            return await conn.fetchrow(
                "SELECT * FROM channel_connections WHERE channel = $1", conv.channel)

    async def set_token(self, conv: Conversation, token: str) -> None:
        async with tenant_tx(self.pool, conv.tenant.id) as conn:
            await conn.execute(
                "UPDATE channel_connections SET access_token = $2 WHERE channel = $1",
                conv.channel, SecretBox(DEV_KEY).seal(token))

    async def until_status(self, conv: Conversation, message_id: uuid.UUID, *statuses: str,
                           timeout: float = 10.0) -> asyncpg.Record:
        from tistis_common.testing.plugin import eventually

        async def check() -> asyncpg.Record | None:
            row = await self.message(conv, message_id)
            return row if row is not None and row["status"] in statuses else None

        return await eventually(check, timeout)  # type: ignore[return-value]


@pytest.fixture
async def other_dispatcher(settings: Settings) -> AsyncIterator[int]:
    """The lease key of another live dispatcher: a session holds its advisory lock."""
    from tistis_common.db import connect as db_connect
    from tistis_dispatcher.lease import LOCK_CLASS

    holder = await db_connect(settings.database_url)
    key = random.randrange(10**5, 10**6)
    await holder.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, key)
    yield key
    await holder.close()


@pytest.fixture
async def clinic(app_pool: asyncpg.Pool, publisher: Publisher, dispatcher: Any) -> Clinic:
    return Clinic(app_pool, publisher)
