"""tistis-dispatcher: one consumer per channel (one platform's outage does not hold up the
others) plus the status consumer; one httpx client for the whole service."""

from __future__ import annotations

from functools import partial

from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.topology import DISPATCHER_OUTBOUND, DISPATCHER_STATUS

from tistis_dispatcher.lease import Lease
from tistis_dispatcher.platform import PlatformClient
from tistis_dispatcher.service import Deps, handle_outbound, handle_status
from tistis_dispatcher.tokens import keep_fresh

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
    assert runtime.pool is not None
    runtime.platform = PlatformClient(PlatformClient.new_http(settings), settings)
    lease = Lease(settings.database_url)
    await lease.acquire()
    runtime.background(lease.keep)
    deps = runtime.deps = Deps(runtime.pool, runtime.platform, settings, claimer=lease.key)
    runtime.background(keep_fresh(deps))  # tokens that expire (TikTok, Instagram Login)
    for spec in DISPATCHER_OUTBOUND.values():
        runtime.consume(spec, partial(handle_outbound, deps=deps))  # type: ignore[arg-type]
    runtime.consume(DISPATCHER_STATUS, partial(handle_status, deps=deps))  # type: ignore[arg-type]
    await runtime.start_consumers()
    await runtime.serve_http()
    return runtime


def cli() -> None:
    serve(NAME, start)
