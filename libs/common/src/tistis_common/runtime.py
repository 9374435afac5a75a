"""What every service shares at run time: database pool, broker connection with the topology
declared, a confirming publisher, its consumers, an HTTP server for probes and metrics, and a
graceful stop on SIGTERM/SIGINT (stop taking events, finish the ones in hand, close)."""

from __future__ import annotations

import asyncio
import platform
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import uvicorn
import uvloop
from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI

from tistis_common import metrics
from tistis_common.body_timeout import BodyReadTimeout
from tistis_common.broker import Consumer, Handler, Publisher, connect
from tistis_common.db import create_pool
from tistis_common.health import add_probe_routes
from tistis_common.logging import configure_logging, get_logger
from tistis_common.management import ManagementApi, sample_queue_depths, vhost_of
from tistis_common.requestid import RequestIdMiddleware
from tistis_common.secrets import SecretBox
from tistis_common.settings import Settings
from tistis_common.topology import QueueSpec, declare_topology, drop_legacy_retry_queues

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)

BackgroundTask = Callable[[asyncio.Event], Awaitable[None]]


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM (drain consumers first)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Runtime:
    def __init__(self, settings: Settings, name: str):
        self.settings = settings
        self.name = name
        self.secrets = SecretBox(settings.secrets_keys)
        self.pool: asyncpg.Pool | None = None
        self.connection: AbstractRobustConnection | None = None
        self.publisher: Publisher | None = None
        self.consumers: list[Consumer] = []
        self.stopping = asyncio.Event()
        self._background: list[asyncio.Task] = []
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._drains: list[Callable[[float], Awaitable[None]]] = []

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        metrics.BUILD_INFO.labels(version("tistis-common"), platform.python_version()).set(1)
        self.pool = await create_pool(s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max,
                                      application_name=self.name)
        self.connection = await connect(s.rabbitmq_url)
        setup = await self.connection.channel()
        await declare_topology(setup, s.retry_delays)
        await setup.close()
        if waiting := await drop_legacy_retry_queues(self.connection, s.retry_delays):
            log.info("topology.legacy_retry_queues_draining", queues=waiting)
        self.publisher = await Publisher.open(self.connection)
        if self.secrets.uses_dev_key:
            log.warning("secrets.dev_key_in_use", hint="set SECRETS_KEYS (tistis secrets new-key)")
        log.info("service.started", name=self.name)

    def consume(self, spec: QueueSpec, handler: Handler, prefetch: int | None = None) -> None:
        """`handler` takes the event types its first parameter names (`broker.handled_types`);
        `prefetch` (default `PREFETCH`): how many of the queue's events are handled at once."""
        assert self.connection and self.publisher
        self.consumers.append(
            Consumer(
                self.connection, spec, handler, self.publisher,
                prefetch=prefetch or self.settings.prefetch,
                retry_delays=self.settings.retry_delays,
            )
        )

    async def start_consumers(self) -> None:
        for consumer in self.consumers:
            await consumer.start()
        if self.consumers:
            self.background(self._sample_queue_depths)

    async def _sample_queue_depths(self, stopping: asyncio.Event) -> None:
        """Consumer lag of this service's queues (with their retry and dead-letter queues)."""
        s = self.settings
        names = [
            name
            for consumer in self.consumers
            for name in (consumer.spec.name, consumer.spec.dlq,
                         *(consumer.spec.retry_queue(d) for d in s.retry_delays))
        ]
        await sample_queue_depths(
            ManagementApi.from_url(s.rabbitmq_management_url), vhost_of(s.rabbitmq_url), names,
            stopping, s.queue_metrics_interval_seconds,
        )

    def background(self, task: BackgroundTask) -> None:
        """A loop of the service's own (a scheduler's clock); it must return once `stopping` is set."""
        self._background.append(asyncio.ensure_future(task(self.stopping)))

    async def serve_http(self, app: FastAPI | None = None) -> None:
        app = app or FastAPI(title=self.name)
        add_probe_routes(app, self.ready)
        app.add_middleware(RequestIdMiddleware)  # outermost: its id is in every line of the request
        # The body timeout wraps everything, webhooks included: uvicorn has none of its own.
        config = uvicorn.Config(
            BodyReadTimeout(app, self.settings.http_body_timeout_seconds), host=self.settings.http_host,
            port=self.settings.http_port, log_config=None,
            access_log=False, lifespan="off",
        )
        self._server = _QuietServer(config)
        self._server_task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # so that `http_port` is known (port 0 picks a free one)
            if self._server_task.done():
                self._server_task.result()
            await asyncio.sleep(0.01)

    @property
    def http_port(self) -> int:
        assert self._server is not None and self._server.servers
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def ready(self) -> dict[str, bool]:
        checks = {"broker": bool(self.connection and not self.connection.is_closed)}
        try:
            assert self.pool is not None
            async with asyncio.timeout(2):
                await self.pool.fetchval("SELECT 1")
            checks["database"] = True
        except Exception:
            checks["database"] = False
        checks["running"] = not self.stopping.is_set()
        return checks

    def drain_at_stop(self, drain: Callable[[float], Awaitable[None]]) -> None:
        """Work a service runs apart from its handlers' tasks (the dispatcher's shielded sends,
        which a closed channel does not cancel): `drain(seconds)` is awaited once the consumers
        stopped, with what is left of the grace, while the pool and the broker are still open."""
        self._drains.append(drain)

    def close_at_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """A client of the service's own (HTTP, media store) closed once the consumers drained."""
        self._closers.append(close)

    async def stop(self) -> None:
        self.stopping.set()
        grace = self.settings.shutdown_grace_seconds
        log.info("service.stopping", grace_s=grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for consumer in self.consumers:
            await consumer.stop(grace)
        for drain in self._drains:  # within what is left of the grace
            await drain(max(0.0, deadline - loop.time()))
        if self._background:
            await asyncio.wait(self._background, timeout=grace)
            for task in self._background:
                task.cancel()
        if self._server is not None:
            self._server.should_exit = True
            if self._server_task:
                with suppress(Exception):
                    await asyncio.wait_for(self._server_task, timeout=5)
        if self.publisher and not self.publisher.channel.is_closed:
            with suppress(Exception):
                await self.publisher.channel.close()
        if self.connection:
            with suppress(Exception):
                await self.connection.close()
        if self.pool:
            await self.pool.close()
        for close in self._closers:
            with suppress(Exception):
                await close()
        log.info("service.stopped", name=self.name)

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()


def serve(name: str, start: Callable[[Settings], Coroutine[Any, Any, Runtime]]) -> None:
    """A service's whole life as a process: settings, logging, start, run until SIGTERM/SIGINT."""

    async def main() -> None:
        settings = Settings(service_name=name)
        configure_logging(name, settings.log_level, settings.log_json)
        runtime = await start(settings)
        await runtime.run_until_signalled()

    # uvloop: the same asyncio API with much cheaper socket I/O (every hop here is a socket).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
