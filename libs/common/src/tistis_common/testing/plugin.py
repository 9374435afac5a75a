"""pytest plugin: a real PostgreSQL database and a real RabbitMQ vhost per test session.

Uses the servers that `scripts/infra.sh up` started on loopback (what `make test` does). Where a
Docker engine exists and TISTIS_TESTCONTAINERS=1, testcontainers starts them instead. Each session
gets its own database (migrated) and vhost, so that several suites can run side by side.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import uvicorn

from tistis_common.admin import load_tenant
from tistis_common.db import connect, create_pool, tenant_tx
from tistis_common.management import apply_dlq_policy
from tistis_common.migrate import migrate
from tistis_common.runtime import Runtime
from tistis_common.secrets import SecretBox
from tistis_common.settings import Settings

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True)
class Infra:
    owner_url: str  # schema owner, may create databases
    app_url: str  # application role (RLS applies)
    amqp_url: str
    management_url: str


def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + db))


def _with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    if os.environ.get("TISTIS_TESTCONTAINERS") == "1":  # pragma: no cover - needs Docker
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with PostgresContainer("postgres:16") as pg, RabbitMqContainer(
            "rabbitmq:3.13-management"
        ) as mq:
            su = pg.get_connection_url(driver=None)
            mq_host, mq_port = mq.get_container_host_ip(), mq.get_exposed_port(5672)
            mgmt = f"http://guest:guest@{mq_host}:{mq.get_exposed_port(15672)}"
            yield Infra(su, su, f"amqp://guest:guest@{mq_host}:{mq_port}/", mgmt)
        return
    s = Settings()
    yield Infra(s.migration_database_url, s.database_url, s.rabbitmq_url, s.rabbitmq_management_url)


@pytest.fixture(scope="session")
async def database(infra: Infra) -> AsyncIterator[tuple[str, str]]:
    """(owner_url, app_url) of a fresh, migrated database for this session."""
    name = f"tistis_test_{uuid.uuid4().hex[:12]}"
    admin = await connect(infra.owner_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    owner_url, app_url = _with_db(infra.owner_url, name), _with_db(infra.app_url, name)
    await migrate(owner_url)
    yield owner_url, app_url
    admin = await connect(infra.owner_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _management(management_url: str) -> httpx.AsyncClient:
    parts = urlsplit(management_url)
    base = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return httpx.AsyncClient(base_url=base, auth=(parts.username or "guest",
                                                  parts.password or "guest"), timeout=10)


@asynccontextmanager
async def temporary_vhost(management_url: str, amqp_url: str,
                          prefix: str = "tistis_test") -> AsyncIterator[str]:
    """A fresh RabbitMQ vhost (created through the management API), deleted after; yields the
    amqp URL that points at it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with _management(management_url) as http:
        (await http.put(f"/api/vhosts/{name}")).raise_for_status()
        user = urlsplit(amqp_url).username or "guest"
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        (await http.put(f"/api/permissions/{name}/{user}", json=perms)).raise_for_status()
        await apply_dlq_policy(http, name)  # as scripts/infra.sh does on "/"
        try:
            yield _with_vhost(amqp_url, name)
        finally:
            await http.delete(f"/api/vhosts/{name}")


@pytest.fixture(scope="session")
async def vhost(infra: Infra) -> AsyncIterator[str]:
    """amqp URL of a fresh vhost for this session."""
    async with temporary_vhost(infra.management_url, infra.amqp_url) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database: tuple[str, str], vhost: str, infra: Infra) -> Settings:
    owner_url, app_url = database
    parts = urlsplit(vhost)
    return Settings(
        database_url=app_url,
        migration_database_url=owner_url,
        rabbitmq_url=vhost,
        rabbitmq_management_url=infra.management_url,
        http_host="127.0.0.1",
        http_port=0,
        retry_delays=[0.2, 0.5],
        shutdown_grace_seconds=5,
        meta_app_secret="test-meta-secret",
        webhook_verify_token="test-app-verify-token",
        tiktok_client_secret="test-tiktok-secret",
        whatsapp_verify_token="test-verify-token",
        log_json=True,
        service_name=f"test:{parts.path}",
    )


@pytest.fixture(scope="session")
async def app_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The application role's pool: read through `tenant_tx`, as the services do."""
    pool = await create_pool(settings.database_url, max_size=5)
    yield pool
    await pool.close()


@dataclass(frozen=True)
class TestTenant:
    id: uuid.UUID
    slug: str
    whatsapp_phone_number_id: str
    instagram_account_id: str
    page_id: str
    tiktok_business_id: str


@pytest.fixture
async def make_tenant(settings: Settings):
    """Creates a tenant with one connection per channel, unique account ids, the demo catalog."""

    async def make(extra: dict | None = None) -> TestTenant:
        n = uuid.uuid4().hex[:10]
        slug = f"clinic-{n}"
        ids = {
            "whatsapp": f"1{int(n, 16) % 10**14:014d}",
            "instagram": f"178{int(n, 16) % 10**14:014d}",
            "facebook": f"2{int(n, 16) % 10**14:014d}",
            "tiktok": f"tt-{n}",
        }
        doc = {
            "tenant": {"slug": slug, "name": f"Clinic {n}", "timezone": "America/Mexico_City"},
            "connections": [
                {"channel": ch, "platform_account_id": acc, "access_token": f"token-{ch}-{n}",
                 "verify_token": f"verify-{n}"}
                for ch, acc in ids.items()
            ],
            "ai_context": {},
            "branches": [{"name": "Centro", "address": "Av. Juárez 1", "capacity": 1,
                          "timezone": "America/Mexico_City",
                          "opening_hours": {d: [["09:00", "18:00"]] for d in
                                            ("mon", "tue", "wed", "thu", "fri")}}],
            "services": [{"name": "Limpieza dental", "price_min": 600, "price_max": 900,
                          "duration_minutes": 45, "keywords": ["limpieza"]}],
            "faqs": [{"question": "¿Cuál es su horario?",
                      "answer": "Lunes a viernes de 9:00 a 18:00.",
                      "keywords": ["horario", "abren"]}],
            **(extra or {}),
        }
        conn = await connect(settings.migration_database_url)
        try:
            tenant_id = await load_tenant(conn, doc, SecretBox(settings.secrets_keys))
        finally:
            await conn.close()
        return TestTenant(tenant_id, slug, ids["whatsapp"], ids["instagram"], ids["facebook"],
                          ids["tiktok"])

    return make


@asynccontextmanager
async def running(start: Callable[[Settings], Awaitable[Runtime]], settings: Settings,
                  **overrides: object) -> AsyncIterator[Runtime]:
    """Run a service in-process with the session's settings, and stop it gracefully after."""
    runtime = await start(settings.model_copy(update=overrides))
    try:
        yield runtime
    finally:
        await runtime.stop()


async def eventually(check: Callable[[], Awaitable[object]], timeout: float = 10.0,
                     interval: float = 0.05) -> object:
    """Polls until `check` returns something truthy; the pipeline is asynchronous by design."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


@asynccontextmanager
async def serving_app(app: object) -> AsyncIterator[str]:
    """Any ASGI app on a free loopback port, in the test's own event loop; yields its base URL
    (stand-ins for outside services, such as a tenant's n8n webhook node)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,  # type: ignore[arg-type]
                                           log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # it failed to start: say why
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def own_vhost(settings: Settings) -> AsyncIterator[Settings]:
    """The session's settings on a vhost of their own, for a test that runs a whole chain of
    services and must not share its queues with services other tests left running."""
    async with temporary_vhost(settings.rabbitmq_management_url, settings.rabbitmq_url,
                               "tistis_own") as url:
        yield settings.model_copy(update={"rabbitmq_url": url})


def named_connections(settings: Settings, name: str) -> Settings:
    """Settings whose broker connections carry `name` (aiormq reads it from the URL), so that
    `force_close_connections` finds them, and come back quickly once closed."""
    parts = urlsplit(settings.rabbitmq_url)
    query = urlencode({"name": name, "reconnect_interval": "0.2"})
    return settings.model_copy(update={"rabbitmq_url": urlunsplit(parts._replace(query=query))})


async def force_close_connections(settings: Settings) -> int:
    """Closes, as the broker does when it shuts down (CONNECTION_FORCED), every connection opened
    with these settings (`named_connections`); returns how many. A service's robust connection
    comes back on its own."""
    parts = urlsplit(settings.rabbitmq_url)
    name = parse_qs(parts.query)["name"][0]
    vhost = unquote(parts.path.lstrip("/")) or "/"
    closed = 0
    async with _management(settings.rabbitmq_management_url) as http:
        while not closed:  # the broker lists a new connection a moment after it opened
            answer = await http.get(f"/api/vhosts/{quote(vhost, safe='')}/connections")
            answer.raise_for_status()
            for c in answer.json():
                if c.get("user_provided_name") == name:
                    await http.delete(f"/api/connections/{quote(c['name'], safe='')}",
                                      headers={"X-Reason": "test: broker shutdown"})
                    closed += 1
            if not closed:
                await asyncio.sleep(0.1)
    return closed


async def broker_closes_channel(channel: Any) -> None:
    """Makes the broker close `channel` (an aio-pika channel) from its side, as it does on a
    channel error: an ack for a delivery it never sent (406 PRECONDITION_FAILED). aiormq cancels
    the handlers of the channel's deliveries, their messages go back to the queue, and a robust
    channel opens again by itself; the connection and the publisher's channel stay up."""
    underlay = await channel.get_underlay_channel()
    await underlay.basic_ack(delivery_tag=2**40, wait=False)


async def tap_events(connection: Any, settings: Settings, *patterns: str) -> Any:
    """An exclusive queue of the test's own on `tistis.events`, bound to `patterns`: what the
    code under test published there, read without taking it from any service's queue."""
    from tistis_common.topology import EXCHANGE, declare_topology

    channel = await connection.channel()
    await declare_topology(channel, settings.retry_delays)
    exchange = await channel.get_exchange(EXCHANGE)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for pattern in patterns:
        await queue.bind(exchange, routing_key=pattern)
    return queue


async def peek_queue(rabbitmq_url: str, queue: str) -> list[tuple[bytes, dict]]:
    """Every message of a queue (a DLQ), body and headers, left in place (taken without ack,
    then returned)."""
    import aio_pika

    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        found = await channel.get_queue(queue)
        taken = []
        while (m := await found.get(no_ack=False, fail=False)) is not None:
            taken.append(m)
        for m in taken:
            await m.nack(requeue=True)
        return [(m.body, dict(m.headers or {})) for m in taken]
    finally:
        await connection.close()


async def inbound_messages(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> dict[str, dict]:
    """A tenant's stored inbound messages by platform message id."""
    async with tenant_tx(pool, tenant_id) as conn:
        rows = await conn.fetch(
            """SELECT platform_message_id, kind, content, payload, conversation_id
               FROM messages WHERE direction = 'inbound'""")
    return {r["platform_message_id"]: dict(r) for r in rows}
