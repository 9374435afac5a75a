"""In-memory state of the fake: what it received, what it was told to answer next, faults.

One `Recorder` lives on `app.state`; every platform module reads and writes it. Everything is
process-local on purpose: the sandbox is a test double, restarted freely, never shared.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from tistis_sandbox.callbacks import Callback, Delivery
from tistis_sandbox.wire import Call, dumps, token_fingerprint

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
    only slows the answer; `tool_input` / `tool_calls` / `text` shape an Anthropic reply.
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
    # Several tool_use blocks in one answer (parallel tool use): [{"name": ..., "input": {...}}]
    tool_calls: list[dict[str, Any]] | None = None
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


@dataclass(slots=True)
class Recorded:
    target: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    # The body as received, parsed again when read: a parsed body is dozens of objects that
    # the garbage collector would walk over and over while thousands of requests are kept.
    raw: bytes
    time: float
    status: int = 0
    answered_id: str | None = None  # wamid, mid, TikTok message id, msg_ id
    error_code: int | str | None = None
    recipient: str | None = None  # the patient a message went to, so `play` can find the reply
    text: str | None = None  # the human-readable part of what was sent
    # "message" for what a patient reads; the rest only show that the clinic is there: a
    # WhatsApp "read" / "typing" (status read, with typing_indicator), a Messenger/Instagram
    # sender action ("mark_seen", "typing_on", ...). Those carry no `recipient`, so that counting
    # a patient's replies counts replies.
    kind: str = "message"
    token: str | None = None  # fingerprint of the access token it carried (wire.token_fingerprint)
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: that deep-copies every recorded body on every poll.
        return {"target": self.target, "method": self.method, "path": self.path,
                "query": self.query, "headers": self.headers, "json": self.json,
                "time": self.time, "status": self.status, "answered_id": self.answered_id,
                "error_code": self.error_code, "recipient": self.recipient, "text": self.text,
                "kind": self.kind, "token": self.token}

    def encoded(self) -> bytes:
        """`to_dict()` as JSON, serialized once: pollers fetch the same rows again and again.

        Only an answered entry is kept: the fakes fill in `status` and the rest together, in one
        synchronous step, so nothing changes after `status` is set.
        """
        if self._encoded is not None:
            return self._encoded
        data = dumps(self.to_dict())
        if self.status:
            self._encoded = data
        return data


class Recorder:
    def __init__(self, demo_brain: bool = False) -> None:
        # The Anthropic fake answers the assistant's tools with the demo brain (`serve
        # --demo-brain`, what `SANDBOX_AI=1 make run` starts); off, it samples the first tool.
        self.demo_brain = demo_brain
        self.requests: list[Recorded] = []
        self.scripts: dict[str, deque[Step]] = {t: deque() for t in TARGETS}
        self.faults: dict[str, Fault] = {t: Fault() for t in TARGETS}
        # Prompt-cache prefixes seen by the Anthropic fake (hash -> tokens).
        self.prompt_cache: dict[str, int] = {}
        self.callbacks: dict[str, Callback] = {}
        self.deliveries: list[Delivery] = []
        # (account, user) pairs whose messaging window the test closed (Graph fake).
        self.closed_windows: set[tuple[str, str]] = set()
        # TikTok rotates refresh tokens: one used for a refresh is refused afterwards.
        self.used_refresh_tokens: set[str] = set()

    def reset(self) -> None:
        self.requests.clear()
        for target in TARGETS:
            self.scripts[target].clear()
            self.faults[target] = Fault()
        self.prompt_cache.clear()
        self.callbacks.clear()
        self.deliveries.clear()
        self.closed_windows.clear()
        self.used_refresh_tokens.clear()

    def queue(self, target: str, steps: list[Step]) -> None:
        self.scripts[target].extend(steps)

    def next_step(self, target: str) -> Step | None:
        """A queued script wins over the standing fault; each script step is used once."""
        if self.scripts[target]:
            return self.scripts[target].popleft()
        return self.faults[target].as_step()

    def record(self, target: str, call: Call) -> Recorded:
        query = {k: (REDACTED if k in SECRET_QUERY else v) for k, v in call.query.items()}
        headers = {k: (REDACTED if k in SECRET_HEADERS else v) for k, v in call.headers.items()}
        auth = call.headers.get("authorization", "")
        token = (auth[7:].strip() if auth.lower().startswith("bearer ") else None) or \
            call.headers.get("access-token") or call.query.get("access_token")
        entry = Recorded(target=target, method=call.method, path=call.path, query=query,
                         headers=headers, raw=call.raw, time=time.time(),
                         token=token_fingerprint(token))
        # One event loop serves the app, so a plain append cannot interleave.
        self.requests.append(entry)
        return entry

    def find(self, targets: Collection[str] | None = None, recipient: str | None = None,
             since: float | None = None) -> list[Recorded]:
        """Oldest first; `since` keeps the requests that arrived at or after that time."""
        return [
            r
            for r in self.requests
            if (not targets or r.target in targets)
            and (recipient is None or r.recipient == recipient)
            and (since is None or r.time >= since)
        ]


async def apply_delay(step: Step | None) -> None:
    if step is not None and step.delay > 0:
        await asyncio.sleep(step.delay)
