"""Scheduler test fixtures: a controllable clock, a queue of our own that sees what the
scheduler publishes (outbound messages, score sets), and rows inserted as the other services
would have written them (leads, conversations, messages, appointments)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import aio_pika
import pytest
from tistis_common.broker import connect
from tistis_common.db import tenant_tx
from tistis_common.events import EVENT_ADAPTER, Event
from tistis_common.settings import Settings
from tistis_common.testing.plugin import running
from tistis_common.topology import EXCHANGE, declare_topology
from tistis_scheduler.deps import Deps
from tistis_scheduler.main import start


class Clock:
    """The scheduler's `now`: tests move it; it never moves by itself."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2027, 1, 8, 18, 0, tzinfo=UTC))  # Friday 8 Jan 2027, 12:00 in CDMX


@dataclass
class Bus:
    """Everything the scheduler published on `message.outbound.*` and `lead.score_set`."""

    queue: aio_pika.abc.AbstractQueue
    seen: list[Event] = field(default_factory=list)

    async def drain(self) -> None:
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            self.seen.append(EVENT_ADAPTER.validate_json(message.body))

    async def events(self, tenant_id: uuid.UUID, *, at_least: int = 0, timeout: float = 10,
                     kind: str | None = None) -> list[Event]:
        """This tenant's events; waits (polling) until at least `at_least` arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await self.drain()
            mine = [e for e in self.seen if e.tenant_id == tenant_id
                    and (kind is None or e.type == kind)]  # type: ignore[attr-defined]
            if len(mine) >= at_least:
                return mine
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(mine)} events arrived, wanted {at_least}: {mine!r}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def bus(settings: Settings):
    connection = await connect(settings.rabbitmq_url)
    channel = await connection.channel()
    await declare_topology(channel, settings.retry_delays)
    exchange = await channel.get_exchange(EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for pattern in ("message.outbound.*", "lead.score_set"):
        await queue.bind(exchange, routing_key=pattern)
    yield Bus(queue)
    await connection.close()


@pytest.fixture
def scheduler(settings: Settings, clock: Clock):
    """Runs the scheduler with the test clock; no clock loop unless a tick is given."""

    def run(tick: float = 0, **overrides: object):
        return running(partial(start, now=clock), settings, scheduler_tick_seconds=tick, **overrides)

    return run


@pytest.fixture
def deps_for(app_pool, settings: Settings, clock: Clock) -> Callable[..., Deps]:
    def make(runtime=None, **overrides: object) -> Deps:
        return Deps(settings.model_copy(update=overrides), app_pool,
                    runtime.publisher if runtime else None, clock)

    return make


@dataclass(frozen=True)
class Patient:
    tenant_id: uuid.UUID
    lead_id: uuid.UUID
    conversation_id: uuid.UUID
    channel: str
    platform_user_id: str


class Rows:
    """Inserts rows as the AI responder, the dispatcher and the admin CLI would have."""

    def __init__(self, pool):
        self.pool = pool

    async def patient(self, tenant, *, channel: str = "whatsapp", name: str | None = "María García",
                      last_inbound_at: datetime | None = None, **lead: object) -> Patient:
        user = f"521{uuid.uuid4().int % 10**10:010d}" if channel == "whatsapp" else uuid.uuid4().hex
        account = {"whatsapp": tenant.whatsapp_phone_number_id, "instagram": tenant.instagram_account_id,
                   "facebook": tenant.page_id, "tiktok": tenant.tiktok_business_id}[channel]
        async with tenant_tx(self.pool, tenant.id) as conn:
            lead_id = await conn.fetchval(
                """INSERT INTO leads (tenant_id, channel, platform_user_id, name, last_inbound_at,
                                      spam, not_interested, opted_out_at, score)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
                tenant.id, channel, user, name, last_inbound_at, lead.get("spam", False),
                lead.get("not_interested", False), lead.get("opted_out_at"), lead.get("score", 50),
            )
            conversation_id = await conn.fetchval(
                """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                              last_inbound_at, status)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                tenant.id, lead_id, channel, account, last_inbound_at, lead.get("status", "active"),
            )
        return Patient(tenant.id, lead_id, conversation_id, channel, user)

    async def message(self, p: Patient, *, direction: str, at: datetime, text: str = "hola") -> None:
        """A stored message; an inbound one also moves the lead's and conversation's last inbound."""
        async with tenant_tx(self.pool, p.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                         sender_type, content, status, sent_at, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)""",
                p.tenant_id, p.conversation_id, p.lead_id, p.channel, direction,
                "lead" if direction == "inbound" else "ai", text,
                "received" if direction == "inbound" else "sent", at,
            )
            if direction == "inbound":
                await conn.execute("UPDATE conversations SET last_inbound_at = $2 WHERE id = $1",
                                   p.conversation_id, at)
                await conn.execute("UPDATE leads SET last_inbound_at = $2 WHERE id = $1", p.lead_id, at)

    async def branch(self, tenant_id: uuid.UUID, **values: object) -> uuid.UUID:
        """Changes the tenant's (only) branch: timezone, opening_hours, capacity, closed_days."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            branch_id = await conn.fetchval("SELECT id FROM branches ORDER BY name LIMIT 1")
            for column in ("timezone", "opening_hours", "capacity", "closed_days", "name"):
                if column in values:
                    await conn.execute(f"UPDATE branches SET {column} = $2 WHERE id = $1",
                                       branch_id, values[column])
        return branch_id

    async def service_id(self, tenant_id: uuid.UUID) -> uuid.UUID:
        async with tenant_tx(self.pool, tenant_id) as conn:
            return await conn.fetchval("SELECT id FROM services ORDER BY name LIMIT 1")

    async def appointment(self, p: Patient, *, at: datetime, booked_at: datetime,
                          minutes: int = 45) -> uuid.UUID:
        """A booked appointment as the booking handler leaves it (claims included)."""
        async with tenant_tx(self.pool, p.tenant_id) as conn:
            branch_id = await conn.fetchval("SELECT id FROM branches ORDER BY name LIMIT 1")
            appointment_id = await conn.fetchval(
                """INSERT INTO appointments (tenant_id, lead_id, branch_id, conversation_id,
                                             scheduled_at, ends_at, booked_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                p.tenant_id, p.lead_id, branch_id, p.conversation_id, at,
                at + timedelta(minutes=minutes), booked_at,
            )
        return appointment_id

    async def fetch(self, tenant_id: uuid.UUID, sql: str, *args: object):
        async with tenant_tx(self.pool, tenant_id) as conn:
            return await conn.fetch(sql, *args)

    async def val(self, tenant_id: uuid.UUID, sql: str, *args: object):
        async with tenant_tx(self.pool, tenant_id) as conn:
            return await conn.fetchval(sql, *args)


@pytest.fixture
def rows(app_pool) -> Rows:
    return Rows(app_pool)
