"""tistis-scorer: turns lead signals and absolute scores into a score, a band and its history."""

from __future__ import annotations

import asyncio
from functools import partial

from tistis_common.logging import configure_logging
from tistis_common.runtime import Runtime
from tistis_common.settings import Settings
from tistis_common.topology import SCORER_SIGNALS

from .handlers import Deps, handle_score_event

NAME = "scorer"


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool is not None
    runtime.consume(SCORER_SIGNALS, partial(handle_score_event, deps=Deps(runtime.pool)))
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
