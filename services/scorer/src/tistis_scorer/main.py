"""tistis-scorer: turns lead signals and absolute scores into a score, a band and its history."""

from __future__ import annotations

from functools import partial

from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.topology import SCORER_SIGNALS

from .deps import Deps
from .handlers import handle_score_event

NAME = "scorer"


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool is not None and runtime.publisher is not None
    deps = Deps(settings, runtime.pool, runtime.publisher)
    runtime.consume(SCORER_SIGNALS, partial(handle_score_event, deps=deps))
    await runtime.start_consumers()
    await runtime.serve_http()
    return runtime


def cli() -> None:
    serve(NAME, start)
