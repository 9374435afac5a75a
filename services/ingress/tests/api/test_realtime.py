"""Realtime SSE feed at the real ingress, fed by events published on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from urllib.parse import quote, unquote, urlsplit

import httpx
from tistis_common.broker import Publisher, connect
from tistis_common.events import (
    Channel,
    ConversationEscalated,
    InboundMessage,
    LeadClassified,
    LeadCreated,
)
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_ingress.api import realtime
from tistis_ingress.main import start as start_ingress


class Stream:
    def __init__(self, response: httpx.Response):
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> dict:
        """The next event (comments and keepalives skipped)."""

        async def read() -> dict:
            fields: dict = {}
            async for line in self._lines:
                if line == "":
                    if "data" in fields:
                        return fields
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            raise AssertionError("stream ended")

        event = await asyncio.wait_for(read(), timeout)
        event["data"] = json.loads(event["data"])
        return event


@asynccontextmanager
async def stream(http: httpx.AsyncClient, key: str, last_event_id: str | None = None
                 ) -> AsyncIterator[Stream]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with http.stream("GET", "/api/v1/events/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


async def _publisher(settings):
    connection = await connect(settings.rabbitmq_url)
    return connection, await Publisher.open(connection)


async def realtime_queues(settings) -> list[str]:
    """The feed's queues in the settings' vhost, as the broker's management API lists them."""
    mgmt = urlsplit(settings.rabbitmq_management_url)
    vhost = unquote(urlsplit(settings.rabbitmq_url).path[1:]) or "/"
    async with httpx.AsyncClient(base_url=f"{mgmt.scheme}://{mgmt.hostname}:{mgmt.port or 15672}",
                                 auth=(mgmt.username or "guest", mgmt.password or "guest")) as http:
        answer = await http.get(f"/api/queues/{quote(vhost, safe='')}", params={"columns": "name"})
        answer.raise_for_status()
        return sorted(q["name"] for q in answer.json() if q["name"].startswith("ingress.realtime."))


def lead_created(tenant_id: uuid.UUID, name: str) -> LeadCreated:
    return LeadCreated(tenant_id=tenant_id, lead_id=uuid.uuid4(), channel=Channel.WHATSAPP, name=name)


class TestRealtimeFeed:
    async def test_new_lead_reaches_the_tenants_stream_within_a_second(self, ingress, keyed_tenant, settings):
        a = await keyed_tenant()
        connection, publisher = await _publisher(settings)
        try:
            async with stream(ingress, a.key) as feed:
                event = lead_created(a.tenant.id, "Juan")
                await publisher.publish(event)
                got = await feed.next(timeout=1.0)
                assert (got["id"], got["event"]) == (str(event.event_id), "lead.created")
                assert got["data"]["name"] == "Juan"
        finally:
            await connection.close()

    async def test_messages_escalations_and_band_changes_are_streamed(self, ingress, keyed_tenant, settings):
        a = await keyed_tenant()
        connection, publisher = await _publisher(settings)
        try:
            async with stream(ingress, a.key) as feed:
                events = [
                    InboundMessage(tenant_id=a.tenant.id, channel=Channel.WHATSAPP,
                                   platform_account_id="1", platform_user_id="u",
                                   platform_message_id=uuid.uuid4().hex, sent_at=datetime.now(UTC),
                                   text="hola"),
                    ConversationEscalated(tenant_id=a.tenant.id, conversation_id=a.conversation_id,
                                          reason="urgent", source="keyword"),
                    LeadClassified(tenant_id=a.tenant.id, lead_id=a.lead_id, score=75,
                                   classification="hot", previous="warm"),
                ]
                for e in events:
                    await publisher.publish(e)
                got = [await feed.next() for _ in events]
                assert [g["event"] for g in got] == [
                    "message.received", "conversation.escalated", "lead.classified"]
                assert [g["id"] for g in got] == [str(e.event_id) for e in events]
        finally:
            await connection.close()

    async def test_reconnecting_with_last_event_id_misses_nothing(self, ingress, keyed_tenant, settings):
        a = await keyed_tenant()
        connection, publisher = await _publisher(settings)
        try:
            first = lead_created(a.tenant.id, "uno")
            async with stream(ingress, a.key) as feed:
                await publisher.publish(first)
                seen = await feed.next()
                assert seen["id"] == str(first.event_id)
            # disconnected: these happen meanwhile
            missed = [lead_created(a.tenant.id, "dos"), lead_created(a.tenant.id, "tres")]
            for e in missed:
                await publisher.publish(e)
            await asyncio.sleep(0.3)  # let the feed take them off the broker while nobody listens
            async with stream(ingress, a.key, last_event_id=seen["id"]) as feed:
                live = lead_created(a.tenant.id, "cuatro")
                got = [await feed.next(), await feed.next()]
                await publisher.publish(live)
                got.append(await feed.next())
            assert [g["data"]["name"] for g in got] == ["dos", "tres", "cuatro"]
        finally:
            await connection.close()

    async def test_tenant_b_sees_nothing_of_tenant_a(self, ingress, keyed_tenant, settings):
        a = await keyed_tenant()
        b = await keyed_tenant()
        connection, publisher = await _publisher(settings)
        try:
            async with stream(ingress, b.key) as feed_b:
                await publisher.publish(lead_created(a.tenant.id, "de A"))
                await publisher.publish(lead_created(a.tenant.id, "de A otra vez"))
                mine = lead_created(b.tenant.id, "de B")
                await publisher.publish(mine)
                got = await feed_b.next()
                assert (got["id"], got["data"]["tenant_id"]) == (str(mine.event_id), str(b.tenant.id))
            # nor by reconnecting with an id of A's
            async with stream(ingress, b.key, last_event_id=str(uuid.uuid4())) as feed_b:
                backlog = await feed_b.next()
                assert backlog["data"]["tenant_id"] == str(b.tenant.id)
        finally:
            await connection.close()

    async def test_stream_without_a_valid_key_is_401(self, ingress):
        answer = await ingress.get("/api/v1/events/stream", headers={"Authorization": "Bearer nope"})
        assert answer.status_code == 401


class TestShutdown:
    async def test_open_streams_end_when_the_ingress_stops(self, settings, keyed_tenant):
        a = await keyed_tenant()
        async with running(start_ingress, settings) as runtime:
            http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.http_port}", timeout=10)
            opened = stream(http, a.key)
            feed = await opened.__aenter__()
            reader = asyncio.create_task(feed.next(timeout=30))
            await asyncio.sleep(0.1)
        # `running` returned: the service stopped with a client still connected
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            await asyncio.wait_for(reader, timeout=5)
        assert reader.done()
        with contextlib.suppress(Exception):
            await opened.__aexit__(None, None, None)
        await http.aclose()


@asynccontextmanager
async def lone_ingress(settings) -> AsyncIterator[tuple[httpx.AsyncClient, Publisher, object]]:
    """An ingress on a vhost of its own (so that its realtime queue is the only one there), a
    client of its HTTP port and a publisher on that vhost; yields the vhost's settings too."""
    async with own_vhost(settings) as mine, running(start_ingress, mine) as runtime:
        connection, publisher = await _publisher(mine)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.http_port}",
                                         timeout=10) as http:
                yield http, publisher, mine
        finally:
            await connection.close()


async def no_realtime_queue(settings) -> bool:
    return await realtime_queues(settings) == []


class TestBoundOnlyWhileListened:
    async def test_nothing_is_consumed_until_a_stream_opens(self, settings, keyed_tenant):
        a = await keyed_tenant()
        async with lone_ingress(settings) as (http, publisher, mine):
            await asyncio.sleep(0.5)  # time enough for a feed that would bind at start
            assert await realtime_queues(mine) == []
            async with stream(http, a.key) as feed:
                assert len(await realtime_queues(mine)) == 1
                event = lead_created(a.tenant.id, "Juan")
                await publisher.publish(event)
                assert (await feed.next())["id"] == str(event.event_id)
            bound = await realtime_queues(mine)
            await asyncio.sleep(0.5)
            assert await realtime_queues(mine) == bound  # lingers for the reconnect

    async def test_after_the_linger_the_queue_goes_and_the_next_stream_binds_again(
            self, settings, keyed_tenant, monkeypatch):
        monkeypatch.setattr(realtime, "RealtimeFeed", partial(realtime.RealtimeFeed, linger=0.3))
        a = await keyed_tenant()
        async with lone_ingress(settings) as (http, publisher, mine):
            async with stream(http, a.key) as feed:
                first = await realtime_queues(mine)
                await publisher.publish(lead_created(a.tenant.id, "uno"))
                assert (await feed.next())["data"]["name"] == "uno"
            await eventually(lambda: no_realtime_queue(mine), timeout=5)
            await publisher.publish(lead_created(a.tenant.id, "nobody listens"))
            async with stream(http, a.key) as feed:
                second = await realtime_queues(mine)
                assert len(second) == 1 and second != first
                await publisher.publish(lead_created(a.tenant.id, "dos"))
                assert (await feed.next())["data"]["name"] == "dos"

    async def test_a_stream_back_within_the_linger_keeps_the_feed_bound(
            self, settings, keyed_tenant, monkeypatch):
        monkeypatch.setattr(realtime, "RealtimeFeed", partial(realtime.RealtimeFeed, linger=0.5))
        a = await keyed_tenant()
        async with lone_ingress(settings) as (http, publisher, mine):
            async with stream(http, a.key) as feed:
                bound = await realtime_queues(mine)
            async with stream(http, a.key) as feed:
                await asyncio.sleep(1.0)  # past the first stream's linger
                assert await realtime_queues(mine) == bound
                await publisher.publish(lead_created(a.tenant.id, "sigo aquí"))
                assert (await feed.next())["data"]["name"] == "sigo aquí"
