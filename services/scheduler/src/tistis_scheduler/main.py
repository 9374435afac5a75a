"""tistis-scheduler: books appointments from requests and chosen slots, and on its own clock
sends reminders and follow-ups.

    tistis-scheduler [serve]     the service: consumers, clock loop, probes and metrics
    tistis-scheduler run-once    one pass over every tenant and exit (a Kubernetes CronJob)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from functools import partial

from tistis_common.logging import configure_logging
from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.storage import open_store
from tistis_common.topology import SCHEDULER_CHOICES, SCHEDULER_REQUESTS

from .deps import Deps, utcnow
from .handlers import clock_loop, handle_choice, handle_request
from .service import PassResult, run_pass

NAME = "scheduler"


async def _deps(runtime: Runtime, now: Callable[[], datetime] | None) -> Deps:
    assert runtime.pool is not None and runtime.publisher is not None
    store = await open_store(runtime.settings)  # retention deletes old patient files
    runtime.close_at_stop(store.close)
    return Deps(runtime.settings, runtime.pool, runtime.publisher, now or utcnow, store)


async def start(settings: Settings, now: Callable[[], datetime] | None = None) -> Runtime:
    """`now` is the scheduler's clock (tests stand it anywhere); a tick <= 0 runs no loop."""
    runtime = Runtime(settings, NAME)
    await runtime.start()
    deps = await _deps(runtime, now)
    runtime.consume(SCHEDULER_REQUESTS, partial(handle_request, deps=deps))
    runtime.consume(SCHEDULER_CHOICES, partial(handle_choice, deps=deps))
    await runtime.start_consumers()
    if settings.scheduler_tick_seconds > 0:
        runtime.background(clock_loop(deps))
    await runtime.serve_http()
    return runtime


async def run_once(settings: Settings, now: Callable[[], datetime] | None = None) -> PassResult:
    """One pass with reminders and follow-ups, for a CronJob (no consumers, no HTTP)."""
    runtime = Runtime(settings, NAME)
    await runtime.start()
    try:
        return await run_pass(await _deps(runtime, now), followups=True)
    finally:
        await runtime.stop()


async def _run_once_main() -> int:
    settings = Settings(service_name=NAME)
    configure_logging(NAME, settings.log_level, settings.log_json)
    result = await run_once(settings)
    print(json.dumps(asdict(result)))
    return 1 if result.errors else 0


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tistis-scheduler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "run-once"))
    args = parser.parse_args(argv)
    if args.command == "run-once":
        sys.exit(asyncio.run(_run_once_main()))
    serve(NAME, start)
