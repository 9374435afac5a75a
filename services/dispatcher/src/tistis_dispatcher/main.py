"""tistis-dispatcher: one consumer per channel (one platform's outage does not hold up the
others) plus the status consumer; one httpx client for the whole service."""

from __future__ import annotations

from functools import partial

from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.storage import open_store
from tistis_common.topology import (
    DISPATCHER_MEDIA,
    DISPATCHER_OUTBOUND,
    DISPATCHER_STATUS,
    DISPATCHER_TYPING,
)

from tistis_dispatcher.deps import Deps
from tistis_dispatcher.handlers import (
    handle_media,
    handle_outbound,
    handle_reply_started,
    handle_status,
)
from tistis_dispatcher.lease import process_lease
from tistis_dispatcher.limiter import TenantLimiter
from tistis_dispatcher.platform import PlatformClient
from tistis_dispatcher.tokens import keep_fresh
from tistis_dispatcher.transcription import Transcriber

NAME = "dispatcher"


class DispatcherRuntime(Runtime):
    """The shared runtime, plus the HTTP client closed after the consumers drained."""

    platform: PlatformClient | None = None
    deps: Deps | None = None

    async def stop(self) -> None:
        await super().stop()
        if self.platform is not None:
            await self.platform.http.aclose()


async def start(settings: Settings) -> Runtime:
    runtime = DispatcherRuntime(settings, NAME)
    await runtime.start()
    assert runtime.pool is not None and runtime.publisher is not None
    platform = runtime.platform = PlatformClient(PlatformClient.new_http(settings), settings)
    lease = process_lease(settings.database_url)
    await lease.acquire()
    runtime.background(lease.keep)
    store = await open_store(settings)
    runtime.close_at_stop(store.close)
    deps = runtime.deps = Deps(
        settings=settings, pool=runtime.pool, publisher=runtime.publisher, platform=platform,
        secrets=runtime.secrets,
        limiter=TenantLimiter(settings.dispatcher_tenant_concurrency,
                              settings.dispatcher_tenant_rate_per_second),
        store=store, transcriber=Transcriber.from_settings(platform.http, settings),
        claimer=lease.key,
    )
    runtime.background(keep_fresh(deps))  # tokens that expire (TikTok, Instagram Login)
    runtime.drain_at_stop(deps.attempts.drain)  # sends whose handler a closed channel cancelled
    for spec in DISPATCHER_OUTBOUND.values():
        runtime.consume(spec, partial(handle_outbound, deps=deps))
    runtime.consume(DISPATCHER_STATUS, partial(handle_status, deps=deps))
    runtime.consume(DISPATCHER_MEDIA, partial(handle_media, deps=deps))
    runtime.consume(DISPATCHER_TYPING, partial(handle_reply_started, deps=deps))
    await runtime.start_consumers()
    await runtime.serve_http()
    return runtime


def cli() -> None:
    serve(NAME, start)
