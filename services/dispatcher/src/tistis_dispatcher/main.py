"""tistis-dispatcher: declares its queues and serves probes and metrics; its consumers come with its issue."""

from __future__ import annotations

import asyncio

from tistis_common.logging import configure_logging
from tistis_common.runtime import Runtime
from tistis_common.settings import Settings

NAME = "dispatcher"


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
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
