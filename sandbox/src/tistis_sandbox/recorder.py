"""In-memory state of the fake: what it received, what it was told to answer next, faults.

One `Recorder` lives on `app.state`; every platform module reads and writes it. Everything is
process-local on purpose: the sandbox is a test double, restarted freely, never shared.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fastapi import Request

from tistis_sandbox.callbacks import Callback, Delivery

Target = Literal["whatsapp", "graph", "tiktok", "anthropic"]
TARGETS: tuple[str, ...] = ("whatsapp", "graph", "tiktok", "anthropic")

# Header values never worth keeping: a recorded request may be printed or logged by a test.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "access-token", "cookie"})
SECRET_QUERY = frozenset({"access_token", "appsecret_proof"})
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Step:
    """One scripted answer, or the standing fault mode turned into one.

    `status` / `error_code` make the platform answer an error in its own format; `delay`
    only slows the answer; `tool_input` / `text` shape an Anthropic reply.
    """

    status: int | None = None
    error_code: int | None = None
    error_subcode: int | None = None
    error_type: str | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    tool_input: dict[str, Any] | None = None
    tool_name: str | None = None
    text: str | None = None
    async_error_code: int | None = None  # accept, then report `failed` by status webhook

    @property
    def is_error(self) -> bool:
        return self.status is not None or self.error_code is not None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Step:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown step fields: {sorted(unknown)}")
        return cls(**raw)


@dataclass
class Fault:
    mode: Literal["ok", "error", "slow"] = "ok"
    status: int = 500
    error_code: int | None = None
    delay: float = 0.0

    def as_step(self) -> Step | None:
        if self.mode == "error":
            return Step(status=self.status, error_code=self.error_code, delay=self.delay)
        if self.mode == "slow":
            return Step(delay=self.delay)
        return None


@dataclass
class Recorded:
    target: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    time: float
    status: int = 0
    answered_id: str | None = None  # wamid, mid, TikTok message id, msg_ id
    error_code: int | str | None = None
    recipient: str | None = None  # the patient this went to, so `play` can find the reply
    text: str | None = None  # the human-readable part of what was sent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def redact_headers(headers: Any) -> dict[str, str]:
    return {
        k.lower(): (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()
    }


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: dict[str, deque[Step]] = {t: deque() for t in TARGETS}
        self.faults: dict[str, Fault] = {t: Fault() for t in TARGETS}
        # Prompt-cache prefixes seen by the Anthropic fake (hash -> tokens).
        self.prompt_cache: dict[str, int] = {}
        self.callbacks: dict[str, Callback] = {}
        self.deliveries: list[Delivery] = []

    def reset(self) -> None:
        self.requests.clear()
        for target in TARGETS:
            self.scripts[target].clear()
            self.faults[target] = Fault()
        self.prompt_cache.clear()
        self.callbacks.clear()
        self.deliveries.clear()

    def queue(self, target: str, steps: list[Step]) -> None:
        self.scripts[target].extend(steps)

    def next_step(self, target: str) -> Step | None:
        """A queued script wins over the standing fault; each script step is used once."""
        if self.scripts[target]:
            return self.scripts[target].popleft()
        return self.faults[target].as_step()

    def record(self, target: str, request: Request, body: Any) -> Recorded:
        query = {
            k: (REDACTED if k in SECRET_QUERY else v) for k, v in request.query_params.items()
        }
        entry = Recorded(
            target=target,
            method=request.method,
            path=request.url.path,
            query=query,
            headers=redact_headers(request.headers),
            json=body,
            time=time.time(),
        )
        # One event loop serves the app, so a plain append cannot interleave.
        self.requests.append(entry)
        return entry

    def find(self, target: str | None = None, recipient: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (target is None or r.target == target)
            and (recipient is None or r.recipient == recipient)
        ]


async def apply_delay(step: Step | None) -> None:
    if step is not None and step.delay > 0:
        await asyncio.sleep(step.delay)
