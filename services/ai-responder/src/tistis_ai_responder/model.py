"""Claude through the official SDK: one request, answered with the assistant's tool calls
(`tools.py`: tool_choice "any", one or more `tool_use` blocks).

Transient failures (429, 5xx, timeouts, connection errors) are retried by the SDK with backoff
(`ai_sdk_max_retries`), then raised as `ModelUnavailable` so that the consumer runner retries
the event after its delays and finally dead-letters it. A request the API refuses (4xx other than
429) raises `ModelRejected`: retrying cannot help. Consecutive failures open the circuit breaker;
while it is open the responder uses its deterministic fallback instead of calling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anthropic
from tistis_common import metrics
from tistis_common.broker import RetryAfter
from tistis_common.logging import get_logger

from .context import TenantContext, conversation_messages, system_blocks
from .tools import ToolCall, definitions

log = get_logger(__name__)


@dataclass(frozen=True)
class ModelReply:
    calls: list[ToolCall]
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: int


class ModelUnavailable(RetryAfter):
    """Transient: retries exhausted for now (429, 5xx, timeout, connection). Carries the API's
    `retry-after`, so that the queue's retry waits at least that long too."""


class ModelRejected(Exception):
    """Permanent: the API refused the request (400, 401, 403, 404, 413)."""


class BadModelOutput(Exception):
    """The model answered without any tool call."""


@dataclass
class CircuitBreaker:
    """Per process: opens after `threshold` consecutive failures; after `reset_s` it half-opens
    and lets exactly one trial call through (every other reply gets the fallback meanwhile);
    the trial's outcome closes it or opens it for another `reset_s`."""

    threshold: int
    reset_s: float
    failures: int = 0
    opened_at: float | None = None
    trial: bool = False  # the one half-open call is under way
    _clock: Any = field(default=time.monotonic, repr=False)

    def allow(self) -> bool:
        """May a call start now? While half-open, True once: for the trial."""
        if self.opened_at is None:
            return True
        if self.trial or self._clock() - self.opened_at < self.reset_s:
            return False
        self.trial = True
        return True

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def success(self) -> None:
        self.failures, self.opened_at, self.trial = 0, None, False
        metrics.AI_CIRCUIT_OPEN.set(0)

    def trip(self) -> None:
        self.failures = max(self.failures, self.threshold - 1)
        self.failure()

    def failure(self) -> None:
        self.failures += 1
        self.trial = False
        if self.failures >= self.threshold:
            if self.opened_at is None:
                log.warning("ai.circuit_opened", failures=self.failures)
            self.opened_at = self._clock()
            metrics.AI_CIRCUIT_OPEN.set(1)

    def settle(self) -> None:
        """The trial ended without a verdict (a refused request, a cancelled call): the next
        call may try again."""
        self.trial = False


class ClaudeResponder:
    def __init__(self, api_key: str, base_url: str | None, *, timeout: float, max_retries: int,
                 breaker: CircuitBreaker):
        # The SDK's aiohttp transport (its `aiohttp` extra): about a quarter less CPU per call
        # than its default httpx transport, measured here against the sandbox.
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            http_client=anthropic.DefaultAioHttpClient(timeout=timeout),
        )
        self.breaker = breaker
        self._no_sampling: set[str] = set()  # models that refused `temperature`

    async def close(self) -> None:
        await self.client.close()

    async def reply(self, clinic: TenantContext, history: list[Any], situation: str,
                    nudge: str | None = None) -> ModelReply:
        started = time.perf_counter()
        trial = self.breaker.is_open  # a call starts while open only as the half-open trial
        try:
            message = await self._create(clinic, history, situation, nudge)
        except (anthropic.RateLimitError, anthropic.InternalServerError,
                anthropic.APITimeoutError, anthropic.APIConnectionError) as exc:
            self.breaker.failure()
            raise ModelUnavailable(f"{type(exc).__name__}: {exc}", retry_after(exc)) from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code in (408, 409) or exc.status_code >= 500:
                self.breaker.failure()
                raise ModelUnavailable(f"{type(exc).__name__}: {exc}", retry_after(exc)) from exc
            if exc.status_code in (401, 402, 403):
                # A bad key or an unpaid account fails every call alike: stop calling at once, so
                # that the retry of this event (and every other) gets the fallback.
                self.breaker.trip()
                raise ModelUnavailable(f"{exc.status_code} {type(exc).__name__}: {exc}") from exc
            # The service answered; it is our request that is wrong: do not open the circuit.
            raise ModelRejected(f"{exc.status_code} {type(exc).__name__}: {exc}") from exc
        finally:
            if trial:
                self.breaker.settle()
        elapsed = time.perf_counter() - started
        self.breaker.success()
        metrics.AI_LATENCY.observe(elapsed)
        calls = tool_calls(message)
        usage = message.usage
        return ModelReply(
            calls=calls,
            model=message.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
            latency_ms=int(elapsed * 1000),
        )


    async def _create(self, clinic: TenantContext, history: list[Any], situation: str,
                      nudge: str | None) -> anthropic.types.Message:
        request: dict[str, Any] = {
            "model": clinic.model,
            "max_tokens": clinic.max_tokens,
            "system": system_blocks(clinic, situation),
            "messages": conversation_messages(history, nudge),
            "tools": definitions(clinic),
            "tool_choice": {"type": "any"},
        }
        if clinic.model in self._no_sampling:
            return await self.client.messages.create(**request)
        # SDK 1.x dropped `temperature` from the signature (the API still takes it on the models
        # that support sampling): it travels in extra_body. Newer models refuse it with a 400;
        # then this model is asked without it from now on.
        try:
            return await self.client.messages.create(
                **request, extra_body={"temperature": clinic.temperature}
            )
        except anthropic.BadRequestError as exc:
            if "temperature" not in str(exc):
                raise
            log.warning("ai.temperature_refused", model=clinic.model)
            self._no_sampling.add(clinic.model)
            return await self.client.messages.create(**request)


def retry_after(exc: Exception) -> float | None:
    """The API's `retry-after` (seconds) on the failed answer, if it gave one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def tool_calls(message: anthropic.types.Message) -> list[ToolCall]:
    """The `tool_use` blocks, in order; checked by `tools.decide` before anything is sent."""
    calls = [ToolCall(block.name, dict(block.input) if isinstance(block.input, dict) else {})
             for block in message.content if block.type == "tool_use"]
    if not calls:
        raise BadModelOutput(f"no tool call (stop_reason={message.stop_reason})")
    return calls
