"""tistis-ai-responder: answers patients."""

from __future__ import annotations

from functools import partial

import httpx
from tistis_common.logging import get_logger
from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.storage import open_store
from tistis_common.topology import AI_INBOUND, AI_STATE

from .handlers import Deps, handle
from .locks import ConversationLocks
from .model import CircuitBreaker, ClaudeResponder
from .service import Engine
from .state import handle_state

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


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool
    responder = build_responder(settings)
    store = await open_store(settings)
    runtime.close_at_stop(store.close)
    engine = Engine(
        pool=runtime.pool, locks=ConversationLocks(), responder=responder,
        default_model=settings.anthropic_model, history_messages=settings.ai_history_messages,
        settings=settings, http=httpx.AsyncClient(timeout=10), store=store,
    )
    deps = Deps(engine=engine, debounce_seconds=settings.ai_debounce_seconds)
    runtime.consume(AI_INBOUND, partial(handle, deps=deps))  # type: ignore[arg-type]
    runtime.consume(AI_STATE, partial(handle_state, deps=deps))  # type: ignore[arg-type]
    await runtime.start_consumers()
    await runtime.serve_http()
    return runtime


def cli() -> None:
    serve(NAME, start)
