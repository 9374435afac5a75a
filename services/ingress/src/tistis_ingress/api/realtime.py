"""Realtime feed (the guide's `useRealtimeDashboard`): `GET /api/v1/events/stream`, server-sent
events per tenant (API key) of new leads, new messages (in and out), escalations / hand-backs
and band changes.

Fed from the broker, only while someone listens: the pipeline emits about three events per
patient message, and consuming them all with no dashboard open costs the broker and the ingress
CPU for nothing. When the first stream (of any tenant) opens, the instance binds one exclusive,
auto-deleted queue to `REALTIME_BINDINGS` and fans each event out to the streams of its tenant;
`LINGER_SECONDS` after the last stream closed it closes that queue's channel (the broker deletes
the queue) until a stream opens again. A stream starts only once the feed is bound (503 if that
takes over 5 s). Every bound instance sees every event, so a client may connect to any of them.

Reconnection: the SSE `id` is the event id. Each instance keeps a bounded ring of the recent
events per tenant; a client that reconnects with `Last-Event-ID` gets what came after that id.
An id the ring no longer holds (evicted, or the instance restarted) replays the whole ring:
better a duplicate the client drops by id than a gap. The linger keeps the ring filling while a
client reconnects; one that stays away longer misses what came while the feed was unbound.

Credentials: a stream holds its `auth.Caller` and asks `still_valid()` every
`REALTIME_RECHECK_SECONDS` (5); a revoked or expired key ends the stream (its reconnect is a
401). Every stream also ends after `REALTIME_MAX_STREAM_SECONDS` (900): the client reconnects
with Last-Event-ID and is authenticated again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from tistis_common import metrics
from tistis_common.logging import get_logger
from tistis_common.topology import EXCHANGE, REALTIME_BINDINGS

from .auth import Caller, key_caller
from .problems import errors

if TYPE_CHECKING:
    from ..deps import Deps

log = get_logger(__name__)

RING_SIZE = 1000
SUBSCRIBER_BUFFER = 1000
KEEPALIVE_SECONDS = 15.0
# How long the feed stays bound after the last stream closed: long enough for a client that
# reconnects (a reload, a flaky network) to find what it missed in the ring.
LINGER_SECONDS = 600.0


@dataclass(frozen=True)
class FeedItem:
    id: str
    type: str
    data: str  # the event's JSON

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n".encode()


class Ring:
    """The recent events of one tenant, oldest first, each id once (a set beside the deque, so
    that a duplicate is found without scanning: every pipeline event passes through here)."""

    def __init__(self, size: int):
        self.items: deque[FeedItem] = deque()
        self.ids: set[str] = set()
        self.size = size

    def add(self, item: FeedItem) -> bool:
        if item.id in self.ids:
            return False
        if len(self.items) == self.size:
            self.ids.discard(self.items.popleft().id)
        self.items.append(item)
        self.ids.add(item.id)
        return True


class RealtimeFeed:
    def __init__(self, connection: AbstractRobustConnection, ring_size: int = RING_SIZE,
                 linger: float = LINGER_SECONDS):
        self.connection = connection
        self.ring_size = ring_size
        self.linger = linger
        self.ready = asyncio.Event()  # bound and consuming: streams may start
        self._rings: dict[uuid.UUID, Ring] = {}
        self._subscribers: dict[uuid.UUID, set[asyncio.Queue[FeedItem | None]]] = {}
        # A stream is open, or the last one closed less than `linger` ago ...
        self._wanted = asyncio.Event()
        # ... or not (set when the linger ran out): the consumer stops.
        self._idle = asyncio.Event()
        self._linger_timer: asyncio.TimerHandle | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Background loop of the runtime: consume while wanted, until the service stops; a
        failure to set the feed up is logged and tried again (the streams answer 503 meanwhile)."""
        try:
            while not stopping.is_set():
                await _first(stopping, self._wanted)
                if stopping.is_set():
                    break
                try:
                    await self._consume(stopping)
                except Exception as exc:
                    log.error("realtime.failed", error=repr(exc)[:500])
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), timeout=1.0)
        finally:
            if self._linger_timer:
                self._linger_timer.cancel()
            for queues in self._subscribers.values():
                for q in queues:
                    q.put_nowait(None)  # end the open streams so that the server can stop

    async def _consume(self, stopping: asyncio.Event) -> None:
        """Bound until the service stops or the feed is idle; a broker reconnect is the robust
        channel's business (it declares, binds and consumes again)."""
        channel = await self.connection.channel()
        name = f"ingress.realtime.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        try:
            exchange = await channel.get_exchange(EXCHANGE)  # declared by the runtime at start
            # Bounded: a stalled instance drops the oldest rather than growing without end.
            queue = await channel.declare_queue(
                name, exclusive=True, auto_delete=True,
                arguments={"x-max-length": 10_000, "x-overflow": "drop-head"},
            )
            for pattern in REALTIME_BINDINGS:
                await queue.bind(exchange, routing_key=pattern)
            await queue.consume(self._on_message, no_ack=True)
            self.ready.set()
            log.info("realtime.started", queue=name)
            await _first(stopping, self._idle)
            log.info("realtime.unbound", queue=name)
        finally:
            self.ready.clear()
            if not channel.is_closed:
                await channel.close()  # the exclusive queue goes with it

    def _listened(self) -> None:
        if self._linger_timer:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._idle.clear()
        self._wanted.set()

    def _lapse(self) -> None:
        """The linger ran out with no stream open."""
        self._linger_timer = None
        self._wanted.clear()
        self.ready.clear()  # a stream that opens now waits for the next binding
        self._idle.set()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # The envelope travels in the AMQP properties (`broker.event_message`): no need to parse
        # and validate the body of every event only to route it to a tenant's streams.
        try:
            tenant_id = uuid.UUID(str((message.headers or {})["tenant_id"]))
            event_id, event_type = str(uuid.UUID(message.message_id or "")), message.type
            data = message.body.decode()
        except (KeyError, ValueError):
            log.warning("realtime.unreadable", routing_key=message.routing_key)
            return
        if not event_type:
            log.warning("realtime.unreadable", routing_key=message.routing_key)
            return
        self.publish(tenant_id, FeedItem(event_id, event_type, data))
        metrics.REALTIME_EVENTS.labels(event_type).inc()

    def publish(self, tenant_id: uuid.UUID, item: FeedItem) -> None:
        ring = self._rings.setdefault(tenant_id, Ring(self.ring_size))
        if not ring.add(item):  # the same event published twice: show once
            return
        for q in list(self._subscribers.get(tenant_id, ())):
            try:
                q.put_nowait(item)
            except asyncio.QueueFull:
                # A client too slow to read: end its stream; it reconnects with Last-Event-ID
                # and gets the rest from the ring.
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    def subscribe(self, tenant_id: uuid.UUID, last_event_id: str | None
                  ) -> tuple[list[FeedItem], asyncio.Queue[FeedItem | None]]:
        """Backlog and live queue, taken together (no await in between: nothing slips through).
        Binds the feed if it is not: wait for `ready` before streaming."""
        held = self._rings.get(tenant_id)
        ring = list(held.items) if held else []
        backlog: list[FeedItem] = []
        if last_event_id:
            ids = [i.id for i in ring]
            backlog = ring[ids.index(last_event_id) + 1:] if last_event_id in ids else ring
        q: asyncio.Queue[FeedItem | None] = asyncio.Queue(SUBSCRIBER_BUFFER)
        self._subscribers.setdefault(tenant_id, set()).add(q)
        metrics.REALTIME_SUBSCRIBERS.inc()
        self._listened()
        return backlog, q

    def unsubscribe(self, tenant_id: uuid.UUID, q: asyncio.Queue[FeedItem | None]) -> None:
        """Idempotent. The last stream out starts the linger."""
        subs = self._subscribers.get(tenant_id)
        if not subs or q not in subs:
            return
        subs.discard(q)
        metrics.REALTIME_SUBSCRIBERS.dec()
        if not subs:
            del self._subscribers[tenant_id]
        if not self._subscribers:
            self._linger_timer = asyncio.get_running_loop().call_later(self.linger, self._lapse)


@dataclass(frozen=True)
class StreamLimits:
    recheck: float  # seconds between credential checks
    lifetime: float  # seconds a stream may last before the client must reconnect


def realtime_router(deps: Deps,
                    authenticate: Callable[..., Awaitable[Caller]] | None = None) -> APIRouter:
    """The streams of `deps.feed` (its loop is started by `main.start`). `authenticate` is the
    dependency that tells who is calling (default: a tenant API key)."""
    feed = deps.feed
    router = APIRouter(prefix="/api/v1", tags=["realtime"])
    limits = StreamLimits(deps.settings.realtime_recheck_seconds,
                          deps.settings.realtime_max_stream_seconds)
    caller_of = authenticate or key_caller(deps.pool, "realtime")

    @router.get("/events/stream", response_class=StreamingResponse, responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        **errors(401, 503)})
    async def stream(
        caller: Caller = Depends(caller_of),
        last_event_id: str | None = Header(None, max_length=100),
    ) -> StreamingResponse:
        tenant_id = caller.tenant_id
        backlog, queue = feed.subscribe(tenant_id, last_event_id)  # binds the feed if idle
        try:
            await asyncio.wait_for(feed.ready.wait(), timeout=5)
        except BaseException as exc:  # not bound in time, or the request cancelled
            feed.unsubscribe(tenant_id, queue)
            if isinstance(exc, TimeoutError):
                raise HTTPException(503, "realtime feed not ready, retry") from exc
            raise
        return StreamingResponse(
            _events(feed, caller, backlog, queue, deps.stopping, limits),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            # Also when the body never starts (the client left while we waited for `ready`):
            # the generator's `finally` runs only once it has started.
            background=BackgroundTask(feed.unsubscribe, tenant_id, queue),
        )

    return router


async def _events(feed: RealtimeFeed, caller: Caller, backlog: list[FeedItem],
                  queue: asyncio.Queue[FeedItem | None], stopping: asyncio.Event,
                  limits: StreamLimits) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    now = loop.time()
    ends_at, next_check, quiet_since = now + limits.lifetime, now + limits.recheck, now
    try:
        yield b"retry: 1000\n: connected\n\n"
        for old in backlog:
            yield old.encode()
        while not stopping.is_set():
            now = loop.time()
            if now >= ends_at:
                metrics.REALTIME_STREAMS_ENDED.labels("lifetime").inc()
                yield b": stream lifetime reached, reconnect\n\n"
                break
            if now >= next_check:
                if not await _still_valid(caller):
                    metrics.REALTIME_STREAMS_ENDED.labels("credential").inc()
                    log.info("realtime.credential_ended", tenant_id=str(caller.tenant_id))
                    break
                next_check = loop.time() + limits.recheck
            wait = min(quiet_since + KEEPALIVE_SECONDS, next_check, ends_at) - loop.time()
            try:
                item = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.0))
            except TimeoutError:
                if loop.time() >= quiet_since + KEEPALIVE_SECONDS:
                    quiet_since = loop.time()
                    yield b": keepalive\n\n"
                continue
            if item is None:
                break
            quiet_since = loop.time()
            yield item.encode()
    finally:
        feed.unsubscribe(caller.tenant_id, queue)


async def _still_valid(caller: Caller) -> bool:
    """A check that fails (the database away) ends the stream too: the reconnect is checked."""
    try:
        return await caller.still_valid()
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        log.warning("realtime.recheck_failed", tenant_id=str(caller.tenant_id),
                    error=type(exc).__name__)
        return False


async def _first(*events: asyncio.Event) -> None:
    """Until any of `events` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


__all__ = ["LINGER_SECONDS", "FeedItem", "RealtimeFeed", "realtime_router"]
