"""A key that stops being valid stops reading: the realtime stream (server-sent events, the
WHATWG HTML standard's EventSource, https://html.spec.whatwg.org/multipage/server-sent-events.html)
asks its credential again every few seconds, so that revoking or expiring a key ends an open
stream within seconds, and every stream ends after its maximum lifetime so that the client
reconnects and is authenticated again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tistis_common.admin import issue_api_key, revoke_api_key
from tistis_common.broker import Publisher, connect
from tistis_common.db import connect as db_connect
from tistis_common.events import Channel, LeadCreated
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress

RECHECK = 0.5
STREAM = "/api/v1/events/stream"


@contextlib.asynccontextmanager
async def streaming_ingress(settings, max_stream_seconds: float):
    async with running(start_ingress, settings, realtime_recheck_seconds=RECHECK,
                       realtime_max_stream_seconds=max_stream_seconds) as runtime:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.http_port}",
                                     timeout=20) as http:
            yield http


@pytest.fixture
async def ingress(settings):
    async with streaming_ingress(settings, max_stream_seconds=3.0) as http:
        yield http


async def new_key(settings, tenant_id: uuid.UUID, expires_at: datetime | None = None
                  ) -> tuple[uuid.UUID, str]:
    conn = await db_connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            return await issue_api_key(conn, tenant_id, "stream", expires_at)
    finally:
        await conn.close()


async def revoke(settings, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
    conn = await db_connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            assert await revoke_api_key(conn, tenant_id, key_id)
    finally:
        await conn.close()


async def seconds_until_end(response: httpx.Response, limit: float) -> tuple[float, list[str]]:
    """How long the server kept the stream open from now, and the event ids it sent meanwhile."""
    loop = asyncio.get_running_loop()
    started, ids = loop.time(), []

    async def drain() -> None:
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])

    try:
        await asyncio.wait_for(drain(), limit)
    except TimeoutError:
        return float("inf"), ids
    return loop.time() - started, ids


def lead_created(tenant_id: uuid.UUID) -> LeadCreated:
    return LeadCreated(tenant_id=tenant_id, lead_id=uuid.uuid4(), channel=Channel.WHATSAPP, name="Ana")


class TestStreamCredentials:
    async def test_a_revoked_key_stops_reading_within_seconds(self, ingress, settings, make_tenant,
                                                              attack):
        tenant = await make_tenant()
        key_id, key = await new_key(settings, tenant.id)
        auth = {"Authorization": f"Bearer {key}"}
        connection = await connect(settings.rabbitmq_url)
        publisher = await Publisher.open(connection)
        try:
            async with ingress.stream("GET", STREAM, headers=auth) as response:
                assert response.status_code == 200
                await revoke(settings, tenant.id, key_id)
                ended = asyncio.create_task(seconds_until_end(response, 10))
                await asyncio.sleep(RECHECK * 3)
                late = lead_created(tenant.id)  # after the recheck: must not be read
                await publisher.publish(late)
                took, ids = await ended
            again = await ingress.get(STREAM, headers=auth)
        finally:
            await connection.close()
        got_through = took > RECHECK + 2 or str(late.event_id) in ids or again.status_code != 401
        attack("revoked key keeps reading the realtime stream", got_through)
        assert not got_through, (took, ids, again.status_code)
        assert (await ingress.get("/api/v1/leads", headers=auth)).status_code == 401

    async def test_an_expired_key_stops_reading_and_is_refused(self, settings, make_tenant,
                                                               attack):
        # A stream lifetime far beyond the key's, so that only the expiry can end the stream;
        # the key lives 3 s so that a busy machine still opens the stream before it expires.
        lifetime = 3.0
        tenant = await make_tenant()
        _, key = await new_key(settings, tenant.id, datetime.now(UTC) + timedelta(seconds=lifetime))
        auth = {"Authorization": f"Bearer {key}"}
        loop = asyncio.get_running_loop()
        async with streaming_ingress(settings, max_stream_seconds=60.0) as ingress:
            opened = loop.time()
            async with ingress.stream("GET", STREAM, headers=auth) as response:
                assert response.status_code == 200
                await seconds_until_end(response, 20)
            took = loop.time() - opened  # from the request: a stream never ended took over 20 s
            refused = [(await ingress.get(path, headers=auth)).status_code
                       for path in (STREAM, "/api/v1/leads")]
        got_through = took > lifetime + RECHECK + 2 or refused != [401, 401]
        attack("expired key keeps reading", got_through)
        assert not got_through, (took, refused)

    async def test_a_stream_ends_at_its_lifetime_and_the_reconnect_is_checked(
            self, ingress, settings, make_tenant, attack):
        tenant = await make_tenant()
        key_id, key = await new_key(settings, tenant.id)
        auth = {"Authorization": f"Bearer {key}"}
        async with ingress.stream("GET", STREAM, headers=auth) as response:
            took, _ = await seconds_until_end(response, 10)
        attack("stream outlives its maximum lifetime", took > 3.0 + 2)
        assert took <= 3.0 + 2, took
        async with ingress.stream("GET", STREAM, headers=auth) as response:
            assert response.status_code == 200  # still a good key: it reads on
        await revoke(settings, tenant.id, key_id)
        reconnect = await ingress.get(STREAM, headers=auth)
        attack("revoked key reconnects to the realtime stream", reconnect.status_code != 401)
        assert reconnect.status_code == 401
        assert reconnect.headers["content-type"].startswith("application/problem+json")
