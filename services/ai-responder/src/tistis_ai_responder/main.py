"""tistis-ai-responder: answers patients."""

from __future__ import annotations

import asyncio
from functools import partial

from tistis_common.logging import configure_logging
from tistis_common.runtime import Runtime
from tistis_common.settings import Settings
from tistis_common.topology import AI_INBOUND

from .handlers import Deps, handle_inbound

NAME = "ai-responder"


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool
    runtime.consume(AI_INBOUND, partial(handle_inbound, deps=Deps(pool=runtime.pool)))  # type: ignore[arg-type]
    await runtime.start_consumers()
    await runtime.serve_http()
    return runtime


async def main() -> None:
    settings = Settings(service_name=NAME)
    configure_logging(NAME, settings.log_level, settings.log_json)
    runtime = await start(settings)
    await runtime.run_until_signalled()


def cli() -> None:
    asyncio.run(main())
