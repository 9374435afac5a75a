"""tistis-ai-responder: answers patients. The only bootstrap: builds the pool, publisher and
clients, the one `Deps`, and registers the consumers and background tasks of `handlers`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
from tistis_common.broker import Publisher
from tistis_common.events import Event
from tistis_common.logging import get_logger
from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.storage import open_store
from tistis_common.topology import AI_INBOUND, AI_REPLIES, AI_STATE

from .deps import Deps
from .handlers import handle, handle_reply_due, handle_state
from .lease import Attempts, process_lease
from .locks import ConversationLocks
from .model import CircuitBreaker, ClaudeResponder

NAME = "ai-responder"
log = get_logger(__name__)


def build_responder(settings: Settings) -> ClaudeResponder | None:
    """None without ANTHROPIC_API_KEY: every reply then comes from the deterministic fallback."""
    if not settings.anthropic_api_key:
        log.warning("ai.no_api_key", fallback=True)
        return None
    breaker = CircuitBreaker(settings.ai_circuit_failures, settings.ai_circuit_reset_seconds)
    return ClaudeResponder(
        settings.anthropic_api_key, settings.anthropic_base_url,
        timeout=settings.ai_timeout_seconds, max_retries=settings.ai_sdk_max_retries,
        breaker=breaker,
    )


class Notifier:
    """Best-effort publishing outside the runner (typing indicators): never awaited by a reply,
    a failure is logged and forgotten."""

    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self._tasks: set[asyncio.Task] = set()

    def __call__(self, event: Event) -> None:
        task = asyncio.ensure_future(self._publish(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: Event) -> None:
        try:
            await self.publisher.publish(event)
        except Exception as exc:
            log.warning("typing.publish_failed", error=repr(exc)[:300])


async def start(settings: Settings, **overrides: Any) -> Runtime:
    """`overrides` replace fields of the `Deps` (tests)."""
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool and runtime.publisher
    lease = process_lease(runtime.pool)
    await lease.acquire()
    attempts = Attempts(runtime.pool, lease)
    runtime.background(attempts.keep)
    runtime.background(lease.keep)
    store = await open_store(settings)
    runtime.close_at_stop(store.close)
    deps = replace(Deps(
        settings=settings, pool=runtime.pool, publisher=runtime.publisher,
        locks=ConversationLocks(), attempts=attempts, responder=build_responder(settings),
        http=httpx.AsyncClient(timeout=10), notify=Notifier(runtime.publisher), store=store,
    ), **overrides)
    # Closed once the consumers drained: the replies in flight finish their calls first.
    runtime.close_at_stop(deps.http.aclose)
    if deps.responder is not None:
        runtime.close_at_stop(deps.responder.close)
    runtime.consume(AI_INBOUND, partial(handle, deps=deps))
    # One consumer slot per reply being composed: the bound on model calls in flight.
    runtime.consume(AI_REPLIES, partial(handle_reply_due, deps=deps),
                    prefetch=settings.ai_max_in_flight)
    runtime.consume(AI_STATE, partial(handle_state, deps=deps))
    await runtime.start_consumers()
    await runtime.serve_http()
    return runtime


def cli() -> None:
    serve(NAME, start)
