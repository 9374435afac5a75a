"""Reading and replaying dead letters over AMQP, without ever losing one.

Peeking (list, show, dry runs) takes messages with basic.get WITHOUT ack on one channel and
returns them all with nack(requeue) at the end: the queue keeps every message.
Replay takes a message, publishes the copy (publisher confirm, mandatory), and acks the
original only after the confirm: a crash in between leaves a duplicate, never a loss, and the
copy keeps its event id (body and message_id untouched) so idempotent consumers drop it.

Where a replay goes: by default straight back to the queue that failed it (`x-original-queue`,
through the default exchange), so that only the consumer that failed sees it again; the other
consumers of the same routing key already handled the event. `--to exchange` republishes on
`tistis.events` with the original routing key (`x-original-routing-key`) instead: every bound
queue gets it again, which idempotency makes harmless but noisy. The failure headers are
reset (a fresh set of retries), the last error kept as `x-last-error`, and `x-replayed`
counts replays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelNotFoundEntity
from tistis_common.broker import (
    H_ATTEMPT,
    H_ERROR,
    H_ERROR_TYPE,
    H_FAILED_AT,
    H_ORIGINAL_KEY,
    H_ORIGINAL_QUEUE,
)
from tistis_common.topology import ALL_QUEUES, EXCHANGE

H_REPLAYED = "x-replayed"
H_REPLAYED_AT = "x-replayed-at"
H_LAST_ERROR = "x-last-error"

Target = Literal["queue", "exchange"]


def known_dlqs() -> list[str]:
    return [spec.dlq for spec in ALL_QUEUES]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class DeadLetter:
    dlq: str
    message_id: str
    headers: dict[str, Any]
    body: bytes
    properties: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, dlq: str, m: AbstractIncomingMessage) -> DeadLetter:
        return cls(
            dlq, m.message_id or "", dict(m.headers or {}), m.body,
            {"content_type": m.content_type, "message_id": m.message_id, "type": m.type,
             "timestamp": m.timestamp},
        )

    @property
    def error_type(self) -> str:
        if H_ERROR_TYPE in self.headers:
            return _text(self.headers[H_ERROR_TYPE])
        deaths = self.headers.get("x-death") or []
        if deaths and isinstance(deaths[0], dict) and deaths[0].get("reason"):
            return f"broker:{_text(deaths[0]['reason'])}"  # e.g. the delivery limit
        return "unknown"

    @property
    def error(self) -> str:
        return _text(self.headers.get(H_ERROR, self.error_type))

    @property
    def attempts(self) -> int:
        return int(self.headers.get(H_ATTEMPT, 0) or 0)

    @property
    def tenant_id(self) -> str | None:
        value = self.headers.get("tenant_id")
        return _text(value) if value is not None else None

    @property
    def failed_at(self) -> datetime | None:
        raw = self.headers.get(H_FAILED_AT)
        if raw:
            try:
                return datetime.fromisoformat(_text(raw))
            except ValueError:
                pass
        ts = self.properties.get("timestamp")
        return ts.replace(tzinfo=ts.tzinfo or UTC) if isinstance(ts, datetime) else None

    @property
    def original_queue(self) -> str:
        value = self.headers.get(H_ORIGINAL_QUEUE)
        return _text(value) if value else self.dlq.removesuffix(".dlq")

    @property
    def original_routing_key(self) -> str | None:
        value = self.headers.get(H_ORIGINAL_KEY)
        return _text(value) if value else None

    def describe(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = self.body.decode(errors="replace")
        return {
            "queue": self.dlq, "message_id": self.message_id, "error_type": self.error_type,
            "error": self.error, "attempts": self.attempts, "tenant_id": self.tenant_id,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "original_queue": self.original_queue, "original_routing_key": self.original_routing_key,
            "headers": {k: _plain(v) for k, v in self.headers.items()}, "body": body,
        }

    def replay_headers(self) -> dict[str, Any]:
        headers = {k: v for k, v in self.headers.items()
                   if k not in (H_ATTEMPT, H_ERROR, H_ERROR_TYPE, H_FAILED_AT, "x-death",
                                "x-first-death-queue", "x-first-death-reason",
                                "x-first-death-exchange", "x-delivery-count")}
        headers[H_LAST_ERROR] = self.error[:2000]
        headers[H_REPLAYED] = int(self.headers.get(H_REPLAYED, 0) or 0) + 1
        headers[H_REPLAYED_AT] = datetime.now(UTC).isoformat()
        return headers


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def _open(connection: AbstractRobustConnection, dlq: str, confirms: bool = False
                ) -> tuple[AbstractChannel, aio_pika.abc.AbstractQueue, int] | None:
    """A channel and the queue (passive: never creates one), or None if it does not exist."""
    channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
    try:
        queue = await channel.declare_queue(dlq, passive=True)
    except ChannelNotFoundEntity:
        return None
    count = queue.declaration_result.message_count or 0
    return channel, queue, count


async def depth(connection: AbstractRobustConnection, queue_name: str) -> int | None:
    opened = await _open(connection, queue_name)
    if opened is None:
        return None
    await opened[0].close()
    return opened[2]


async def peek(connection: AbstractRobustConnection, dlq: str, limit: int = 10_000
               ) -> tuple[int, list[DeadLetter]] | None:
    """(count, up to `limit` messages) without removing any; None if the queue does not exist."""
    opened = await _open(connection, dlq)
    if opened is None:
        return None
    channel, queue, count = opened
    held: list[AbstractIncomingMessage] = []
    try:
        for _ in range(min(count, limit)):
            m = await queue.get(no_ack=False, fail=False)
            if m is None:
                break
            held.append(m)
        return count, [DeadLetter.of(dlq, m) for m in held]
    finally:
        for m in held:
            await m.nack(requeue=True)
        await channel.close()


Matcher = Callable[[DeadLetter], bool]


@dataclass
class ReplayOutcome:
    replayed: list[DeadLetter] = field(default_factory=list)
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)


async def replay(connection: AbstractRobustConnection, dlq: str, match: Matcher, *,
                 target: Target = "queue", dry_run: bool = False) -> ReplayOutcome:
    outcome = ReplayOutcome()
    opened = await _open(connection, dlq, confirms=True)
    if opened is None:
        return outcome
    channel, queue, count = opened
    held: list[AbstractIncomingMessage] = []
    try:
        exchange = await channel.get_exchange(EXCHANGE) if target == "exchange" else None
        # Only the messages there when we started: a replay that fails again and lands back
        # in this DLQ is not taken a second time.
        for _ in range(count):
            m = await queue.get(no_ack=False, fail=False)
            if m is None:
                break
            letter = DeadLetter.of(dlq, m)
            if not match(letter):
                held.append(m)
                continue
            if dry_run:
                held.append(m)
                outcome.replayed.append(letter)
                continue
            try:
                await _republish(channel, exchange, letter)
            except Exception as exc:  # not routed, refused: the original stays in the DLQ
                held.append(m)
                outcome.failed.append((letter, f"{type(exc).__name__}: {exc}"))
                continue
            await m.ack()
            outcome.replayed.append(letter)
    finally:
        for m in held:
            await m.nack(requeue=True)
        await channel.close()
    return outcome


async def _republish(channel: AbstractChannel, exchange: aio_pika.abc.AbstractExchange | None,
                     letter: DeadLetter) -> None:
    props = {k: v for k, v in letter.properties.items() if v is not None}
    message = aio_pika.Message(body=letter.body, headers=letter.replay_headers(),
                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props)
    if exchange is not None:
        key = letter.original_routing_key
        if not key:
            raise ValueError("no x-original-routing-key header")
        await exchange.publish(message, routing_key=key, mandatory=True, timeout=10)
    else:
        await channel.default_exchange.publish(
            message, routing_key=letter.original_queue, mandatory=True, timeout=10
        )


async def purge(connection: AbstractRobustConnection, dlq: str, match: Matcher | None) -> int:
    """Deletes the matching messages (all when `match` is None); returns how many."""
    if match is None:
        opened = await _open(connection, dlq)
        if opened is None:
            return 0
        channel, queue, _ = opened
        try:
            result = await queue.purge()
            return int(result.message_count or 0)
        finally:
            await channel.close()
    opened = await _open(connection, dlq)
    if opened is None:
        return 0
    channel, queue, count = opened
    held, removed = [], 0
    try:
        for _ in range(count):
            m = await queue.get(no_ack=False, fail=False)
            if m is None:
                break
            if match(DeadLetter.of(dlq, m)):
                await m.ack()
                removed += 1
            else:
                held.append(m)
    finally:
        for m in held:
            await m.nack(requeue=True)
        await channel.close()
    return removed


def summarize(letters: Sequence[DeadLetter]) -> tuple[datetime | None, dict[str, int]]:
    kinds: dict[str, int] = {}
    for letter in letters:
        kinds[letter.error_type] = kinds.get(letter.error_type, 0) + 1
    times = [t for t in (letter.failed_at for letter in letters) if t is not None]
    return (min(times) if times else None), dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
