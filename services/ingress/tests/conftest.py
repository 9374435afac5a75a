"""Fixtures for the ingress tests: a running ingress, a tap on the exchange, signed posts.

Payload files under payloads/ are the platforms' documented samples; `<PHONE_NUMBER_ID>` and
`<ACCOUNT_ID>` stand for the tenant's own account on that channel and are filled in per test.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from tistis_common.broker import connect
from tistis_common.events import (
    MEDIA_PENDING_PATTERN,
    AnyEvent,
    InboundMessage,
    MessageStatus,
    OptOutChanged,
    parse_event,
    routing_pattern,
)
from tistis_common.testing.plugin import TestTenant, running, tap_events
from tistis_common.topology import declare_topology
from tistis_ingress.main import start as start_ingress

PAYLOADS = Path(__file__).parent / "payloads"
OUR_META_APP_ID = "1517776481860111"  # the app id in the *_echo_ours.json samples


def account_of(tenant: TestTenant, channel: str) -> str:
    return {"whatsapp": tenant.whatsapp_phone_number_id, "facebook": tenant.page_id,
            "instagram": tenant.instagram_account_id, "tiktok": tenant.tiktok_business_id}[channel]


def payload(name: str, account: str) -> bytes:
    text = (PAYLOADS / f"{name}.json").read_text()
    return text.replace("<PHONE_NUMBER_ID>", account).replace("<ACCOUNT_ID>", account).encode()


def meta_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def tiktok_headers(body: bytes, secret: str, t: int | None = None) -> dict[str, str]:
    t = int(time.time()) if t is None else t
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Tiktok-Signature": f"t={t},s={digest}"}


class Tap:
    """Every event of the kinds the ingress publishes, in this session's vhost, by tenant."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []
        self.fences: set[str] = set()
        self._arrived = asyncio.Condition()
        self.channel: aio_pika.abc.AbstractChannel | None = None
        self.queue_name = ""

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            if message.type == "tap.fence":
                async with self._arrived:
                    self.fences.add(str(message.message_id))
                    self._arrived.notify_all()
                return
            event = parse_event(message.body)
        async with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()

    def of(self, tenant_id) -> list[AnyEvent]:
        return [e for e in self.events if e.tenant_id == tenant_id]

    async def wait_for(self, tenant_id, count: int, timeout: float = 5.0) -> list[AnyEvent]:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.of(tenant_id)) >= count), timeout)
        return self.of(tenant_id)

    async def settled(self, tenant_id) -> list[AnyEvent]:
        """Everything the tenant has, once all that was routed before now has been read.

        The ingress answers only after the broker confirmed (i.e. routed) its events, so a
        marker put into the tap's own FIFO queue after the answer comes out after them."""
        assert self.channel is not None
        fence = uuid.uuid4().hex
        await self.channel.default_exchange.publish(
            aio_pika.Message(b"", type="tap.fence", message_id=fence), routing_key=self.queue_name)
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: fence in self.fences), 5)
        return self.of(tenant_id)


@pytest.fixture(scope="session")
async def tap(settings) -> AsyncIterator[Tap]:
    tap = Tap()
    connection = await aio_pika.connect(settings.rabbitmq_url)
    channel = await connection.channel()
    exchange = await declare_topology(channel, settings.retry_delays)
    queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
    # What the ingress publishes; not '#', which would make every event of the session routable
    # (other suites in the same session check that unrouted events are parked).
    for model in (InboundMessage, MessageStatus, OptOutChanged):
        await queue.bind(exchange, routing_pattern(model))
    await queue.bind(exchange, MEDIA_PENDING_PATTERN)  # patient files, fetched by the dispatcher
    tap.channel, tap.queue_name = channel, queue.name
    await queue.consume(tap.on_message)
    yield tap
    await connection.close()


@pytest.fixture
async def events_queue(settings) -> AsyncIterator[Callable[..., Awaitable[aio_pika.abc.AbstractQueue]]]:
    """`await events_queue(*patterns)`: an exclusive queue of the test's own on `tistis.events`,
    bound to those routing patterns (what the operator API and the inbox published)."""
    connection = await connect(settings.rabbitmq_url)

    async def bound(*patterns: str) -> aio_pika.abc.AbstractQueue:
        return await tap_events(connection, settings, *patterns)

    yield bound
    await connection.close()


@dataclass
class Poster:
    http: httpx.AsyncClient
    meta_secret: str
    tiktok_secret: str

    async def post(self, channel: str, tenant: TestTenant, name: str, *,
                   slug: str | None = None, account: str | None = None,
                   body: bytes | None = None, headers: dict[str, str] | None = None,
                   tiktok_t: int | None = None) -> httpx.Response:
        body = body if body is not None else payload(name, account or account_of(tenant, channel))
        if headers is None:
            headers = (tiktok_headers(body, self.tiktok_secret, tiktok_t) if channel == "tiktok"
                       else meta_headers(body, self.meta_secret))
        return await self.http.post(f"/api/webhook/{channel}/{slug or tenant.slug}",
                                    content=body, headers=headers)


@pytest.fixture(scope="session")
async def ingress(settings, tap):
    async with running(start_ingress, settings, meta_app_id=OUR_META_APP_ID) as runtime:
        yield runtime


@pytest.fixture(scope="session")
async def poster(ingress, settings) -> AsyncIterator[Poster]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
        yield Poster(http, settings.meta_app_secret, settings.tiktok_client_secret)


class ScratchVhost:
    """A vhost of our own that the test can take away and give back, leaving the shared
    RabbitMQ server (and everyone else's vhosts) alone."""

    def __init__(self, settings):
        self.name = f"tistis_outage_{uuid.uuid4().hex[:10]}"
        mgmt = urlsplit(settings.rabbitmq_management_url)
        self.base = urlunsplit(mgmt._replace(netloc=f"{mgmt.hostname}:{mgmt.port or 15672}"))
        self.auth = (mgmt.username or "guest", mgmt.password or "guest")
        amqp = urlsplit(settings.rabbitmq_url)
        self.user = amqp.username or "guest"
        self.url = urlunsplit(amqp._replace(path="/" + quote(self.name, safe="")))

    async def create(self, retry_delays, *, topology: bool = True) -> None:
        async with httpx.AsyncClient(base_url=self.base, auth=self.auth, timeout=10) as http:
            (await http.put(f"/api/vhosts/{self.name}")).raise_for_status()
            perms = {"configure": ".*", "write": ".*", "read": ".*"}
            (await http.put(f"/api/permissions/{self.name}/{self.user}", json=perms)).raise_for_status()
        if topology:
            connection = await connect(self.url)
            await declare_topology(await connection.channel(), retry_delays)
            await connection.close()

    async def delete(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, auth=self.auth, timeout=10) as http:
            await http.delete(f"/api/vhosts/{self.name}")
