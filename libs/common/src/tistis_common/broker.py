"""Publishing with confirms, and the one consumer runner every service uses.

A handler is `async def handle(event: SomeEvent, deps) -> Sequence[Event]` (dependencies bound
with functools.partial). The runner reads the event type from the handler's annotation (a union
names several) and hands it only those: another event routed to the same queue is acknowledged
and counted `ignored`. The runner owns the rest: validate, handle, publish what the handler returned
(each confirmed by the broker), then ack. Handlers must be idempotent and, on a redelivery,
return the same events again (deterministic ids), so that a crash between commit and publish
loses nothing and downstream consumers drop the duplicates.

Failures: `PermanentError` (or an event that does not validate) goes straight to `<queue>.dlq`;
anything else is retried after growing delays, then dead-lettered. The error, its type, the
attempt count and the original routing key travel in the headers. `WaitForClaim` is the one
exception that spends no attempt: the event only waits for another worker's claim, which ends by
itself (finished, given back, or expired), so dead-lettering it would lose work nobody failed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import traceback
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aiormq import spec
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.header import ContentHeader
from pydantic import ValidationError

from tistis_common import metrics
from tistis_common.events import Event, dump_event, parse_event, routing_key
from tistis_common.logging import bound, get_logger
from tistis_common.topology import EXCHANGE, QueueSpec

log = get_logger(__name__)

Handler = Callable[..., Awaitable[Sequence[Event]]]


def handled_types(handler: Handler) -> tuple[type[Event], ...]:
    """The event types a handler takes: its first parameter's annotation (Event when none)."""
    func: Any = handler
    while isinstance(func, functools.partial):
        func = func.func
    parameters = list(inspect.signature(func).parameters.values())
    annotation = parameters[0].annotation if parameters else inspect.Parameter.empty
    if annotation is inspect.Parameter.empty:
        return (Event,)
    if isinstance(annotation, str):  # postponed annotations: the type must be imported at run time
        try:
            annotation = eval(annotation, getattr(func, "__globals__", {}))
        except NameError as exc:
            raise TypeError(f"{func.__qualname__}: import its event type at run time") from exc
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    accepted = tuple(m for m in members if isinstance(m, type) and issubclass(m, Event))
    if len(accepted) != len(members):
        raise TypeError(f"{func.__qualname__}: its first parameter must be typed with events")
    return accepted

H_ATTEMPT = "x-attempt"
H_ERROR = "x-error"
H_ERROR_TYPE = "x-error-type"
H_ORIGINAL_KEY = "x-original-routing-key"
H_ORIGINAL_QUEUE = "x-original-queue"
H_FAILED_AT = "x-failed-at"
H_WAITS = "x-waits"  # how often the event waited for a claim (`WaitForClaim`), not attempts

MAX_WAITS = 100  # a claim that outlives this many waits broke its promise: attempts count again


REQUEUE_PAUSE_SECONDS = 1.0  # before a delivery whose outcome could not be published goes back


class PermanentError(Exception):
    """Retrying cannot help (bad data, a rule says no): dead-letter at once.

    `publish`: events to publish (confirmed) before the input is dead-lettered, so that what
    follows from the failure is not lost with it (a message whose file could not be fetched
    still reaches the responder, while the fetch waits in the DLQ for a replay)."""

    def __init__(self, *args: object, publish: Sequence[Event] = ()):
        super().__init__(*args)
        self.publish = list(publish)


class RetryAfter(Exception):
    """Transient, and the other side said when to come back (`retry-after`): the retry waits at
    least `seconds` (the first retry queue that long), still within the bounded attempts."""

    def __init__(self, message: str, seconds: float | None = None):
        super().__init__(message)
        self.seconds = seconds


class WaitForClaim(Exception):
    """Another worker holds this event's claim and is busy with it; the claim ends by itself
    within `seconds` (its timeout). Retried without spending an attempt, after growing delays
    never longer than the first that covers `seconds`: the handler settles an expired claim on
    the next try, so the waits are bounded by the claim's timeout (and by `MAX_WAITS`)."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = max(0.0, seconds)


async def connect(url: str) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(url, client_properties={"connection_name": "tistis"})


def event_message(event: Event, headers: dict | None = None) -> aio_pika.Message:
    # A delayed event (`ReplyDue`) carries its wait as a per-message TTL for its delay queue; one
    # due at once goes straight to its work queue, where a TTL would expire it while it waits.
    delay_ms = getattr(event, "delay_ms", 0)
    return aio_pika.Message(
        expiration=delay_ms / 1000 if delay_ms > 0 else None,
        body=dump_event(event),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(event.event_id),
        type=event.type,  # type: ignore[attr-defined]
        timestamp=event.occurred_at,
        headers={
            "tenant_id": str(event.tenant_id),
            "correlation_id": str(event.correlation_id or event.event_id),
            **(headers or {}),
        },
    )


class NotConfirmed(Exception):
    """The broker did not ack an event: it is not safely stored."""


class Publisher:
    """Publishes persistent events and returns only once the broker confirmed each one.

    Batched, because publishing is most of the CPU of a busy service: the events of all callers
    that publish in the same event-loop turn are marshalled into ONE frame buffer and written
    with one socket write, each with its own delivery tag and confirm future (aiormq's own
    bookkeeping, so a return or a nack fails only its own caller); the broker confirms them in
    turn, usually with `multiple` acks covering many. aio-pika's `Exchange.publish(timeout=...)`
    instead wraps the channel lock, the write and the confirm each in `asyncio.wait_for` (three
    tasks per message) and writes every message on its own: at the ingress, batching took a
    webhook from 20-28 % to 62 % of a bare route's requests/s. One deadline (`asyncio.timeout`)
    covers a call.
    """

    def __init__(self, channel: AbstractChannel, exchange: AbstractExchange, timeout: float = 10):
        self.channel = channel
        self.exchange = exchange
        self.timeout = timeout
        self._pending: list[tuple[Event, asyncio.Future]] = []
        self._flushing: asyncio.Task | None = None

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, timeout: float = 10) -> Publisher:
        # Confirms on; an event no queue is bound for raises instead of vanishing.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(EXCHANGE)
        return cls(channel, exchange, timeout)

    async def publish(self, event: Event) -> None:
        await self.publish_all([event])

    async def publish_all(self, events: Sequence[Event]) -> None:
        """All in flight at once; returns when every confirm is back, raises if any failed."""
        if not events:
            return
        if self.channel.is_closed:
            raise ChannelInvalidStateError("publisher channel is closed")
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            underlay = await self.channel.get_underlay_channel()
            futures = []
            for event in events:
                future = loop.create_future()
                self._pending.append((event, future))
                futures.append(future)
            if self._flushing is None:
                # After this turn of the loop: events published meanwhile join the batch.
                self._flushing = loop.create_task(self._flush(underlay))
            for future in futures:
                confirmation = await future
                if not isinstance(confirmation, spec.Basic.Ack):
                    raise NotConfirmed(f"broker answered {type(confirmation).__name__}")
        elapsed = time.perf_counter() - started
        for event in events:
            metrics.PUBLISH_CONFIRM_SECONDS.observe(elapsed)
            metrics.EVENTS_PUBLISHED.labels(event.type).inc()  # type: ignore[attr-defined]

    async def _flush(self, underlay: Any) -> None:
        try:
            await asyncio.sleep(0)
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._write(underlay, batch)
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception)
                                                 else ChannelInvalidStateError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._flushing = None

    @staticmethod
    async def _write(underlay: Any, batch: list[tuple[Event, asyncio.Future]]) -> None:
        """What aiormq's `basic_publish` does per message, for a batch in one frame buffer."""
        frames: list = []
        async with underlay.lock:  # delivery tags must follow the order frames are written in
            if underlay.is_closed:
                raise ChannelInvalidStateError("publisher channel is closed")
            for event, future in batch:
                message = event_message(event)
                properties = message.properties
                underlay.delivery_tag += 1
                confirmation = underlay.create_future()
                underlay.confirmations[underlay.delivery_tag] = confirmation
                message_id = properties.message_id
                underlay.message_id_delivery_tag[message_id] = underlay.delivery_tag
                confirmation.add_done_callback(
                    lambda done, mid=message_id, out=future: _settle(underlay, mid, done, out))
                frames.append(spec.Basic.Publish(exchange=EXCHANGE, routing_key=routing_key(event),
                                                 mandatory=True))
                frames.append(ContentHeader(properties=properties, body_size=len(message.body)))
                frames.extend(underlay._split_body(message.body))
            await underlay.write_queue.put(ChannelFrame.marshall(
                channel_number=underlay.number, frames=frames))

    async def send_to_queue(self, queue: str, body: bytes, headers: dict, props: dict) -> None:
        """Through the default exchange, straight to one queue (retries, dead letters, replay)."""
        message = aio_pika.Message(
            body=body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **props
        )
        await self.channel.default_exchange.publish(
            message, routing_key=queue, mandatory=True, timeout=self.timeout
        )


def _settle(underlay: Any, message_id: str, confirmation: asyncio.Future,
            out: asyncio.Future) -> None:
    underlay.message_id_delivery_tag.pop(message_id, None)
    if out.done():
        return
    if confirmation.cancelled():
        out.set_exception(ChannelInvalidStateError("confirmation cancelled"))
    elif (error := confirmation.exception()) is not None:
        out.set_exception(error)
    else:
        out.set_result(confirmation.result())


def _copy_props(message: AbstractIncomingMessage) -> dict:
    return {
        "content_type": message.content_type,
        "message_id": message.message_id,
        "type": message.type,
        "timestamp": message.timestamp,
    }


class Consumer:
    """Runs one handler on one queue with bounded prefetch; stops gracefully."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        spec: QueueSpec,
        handler: Handler,
        publisher: Publisher,
        *,
        prefetch: int,
        retry_delays: Sequence[float],
    ):
        self.connection = connection
        self.spec = spec
        self.handler = handler
        self.accepts = handled_types(handler)
        self.publisher = publisher
        self.prefetch = prefetch
        self.retry_delays = list(retry_delays)
        self._channel: AbstractChannel | None = None
        self._tag: str | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._in_flight: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self._queue = await self._channel.get_queue(self.spec.name)
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", queue=self.spec.name, prefetch=self.prefetch)

    async def stop(self, grace: float) -> None:
        """Take no new events, let the ones in hand finish, then close."""
        if self._queue is not None and self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception:  # the channel may already be gone; in-flight work still finishes
                log.warning("consumer.cancel_failed", queue=self.spec.name)
        if self._in_flight:
            log.info("consumer.draining", queue=self.spec.name, in_flight=len(self._in_flight))
            await asyncio.wait(self._in_flight, timeout=grace)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        log.info("consumer.stopped", queue=self.spec.name)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        metrics.CONSUMER_IN_FLIGHT.labels(self.spec.name).inc()
        try:
            await self._process(message)
        except Exception as exc:
            # Not even the retry could be published (after a lost connection the consumer's
            # channel can be back before the publisher's): the delivery goes back to the queue
            # instead of staying unacknowledged until the next disconnect.
            await self._requeue(message, exc)
        finally:
            self._in_flight.discard(task)
            metrics.CONSUMER_IN_FLIGHT.labels(self.spec.name).dec()

    async def _requeue(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        log.warning("event.requeued", queue=self.spec.name, error=repr(exc)[:500])
        metrics.EVENTS_CONSUMED.labels(self.spec.name, "requeued").inc()
        await asyncio.sleep(REQUEUE_PAUSE_SECONDS)  # the publisher's channel comes back meanwhile
        try:
            await message.nack(requeue=True)
        except Exception:  # the channel is gone too: the broker redelivers it anyway
            log.warning("event.requeue_failed", queue=self.spec.name)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        queue = self.spec.name
        attempt = int(str((message.headers or {}).get(H_ATTEMPT, 0))) + 1
        try:
            event = parse_event(message.body)
        except ValidationError as exc:
            await self._dead_letter(message, exc, attempt)
            return
        if not isinstance(event, self.accepts):  # another consumer's event on a shared binding
            await message.ack()
            metrics.EVENTS_CONSUMED.labels(queue, "ignored").inc()
            return
        with bound(
            tenant_id=str(event.tenant_id), event_id=str(event.event_id), event_type=event.type,
            correlation_id=str(event.correlation_id or event.event_id), queue=queue,
        ):
            started = time.perf_counter()
            try:
                produced = await self.handler(event)
                await self.publisher.publish_all(produced)
            except PermanentError as exc:
                try:
                    await self.publisher.publish_all(exc.publish)
                except Exception as failed:  # not published: the input is retried instead
                    await self._retry_or_dead_letter(message, failed, attempt)
                else:
                    await self._dead_letter(message, exc, attempt)
            except asyncio.CancelledError:
                raise
            except WaitForClaim as exc:
                waits = int(str((message.headers or {}).get(H_WAITS, 0)))
                if waits >= MAX_WAITS:
                    await self._retry_or_dead_letter(message, exc, attempt)
                else:
                    await self._wait(message, exc, attempt, waits)
            except Exception as exc:
                await self._retry_or_dead_letter(message, exc, attempt)
            else:
                await message.ack()
                metrics.EVENTS_CONSUMED.labels(queue, "ok").inc()
                log.debug("event.handled", produced=len(produced))
            finally:
                metrics.HANDLER_SECONDS.labels(queue).observe(time.perf_counter() - started)

    async def _retry_or_dead_letter(self, message: AbstractIncomingMessage, exc: Exception,
                                    attempt: int) -> None:
        if attempt <= len(self.retry_delays):
            await self._retry(message, exc, attempt)
        else:
            await self._dead_letter(message, exc, attempt)

    def _failure_headers(self, message: AbstractIncomingMessage, exc: BaseException, attempt: int) -> dict:
        headers = dict(message.headers or {})
        headers.setdefault(H_ORIGINAL_KEY, message.routing_key or "")
        headers.setdefault(H_ORIGINAL_QUEUE, self.spec.name)
        headers[H_ATTEMPT] = attempt
        headers[H_ERROR] = f"{type(exc).__name__}: {exc}"[:2000]
        headers[H_ERROR_TYPE] = type(exc).__name__
        headers[H_FAILED_AT] = datetime.now(UTC).isoformat()
        return headers

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        delay = self.retry_delays[attempt - 1]
        wanted = exc.seconds if isinstance(exc, RetryAfter) else None
        if wanted is not None and wanted > delay:
            delay = next((d for d in self.retry_delays if d >= wanted), self.retry_delays[-1])
        return delay

    async def _retry(self, message: AbstractIncomingMessage, exc: Exception, attempt: int) -> None:
        delay = self._retry_delay(exc, attempt)
        log.warning("event.retry", attempt=attempt, delay_s=delay, error=repr(exc)[:500])
        await self.publisher.send_to_queue(
            self.spec.retry_queue(delay), message.body,
            self._failure_headers(message, exc, attempt), _copy_props(message),
        )
        await message.ack()
        metrics.RETRIES.labels(self.spec.name).inc()
        metrics.EVENTS_CONSUMED.labels(self.spec.name, "retry").inc()

    def _wait_delay(self, exc: WaitForClaim, waits: int) -> float:
        growing = self.retry_delays[min(waits, len(self.retry_delays) - 1)]
        covering = next((d for d in self.retry_delays if d >= exc.seconds), self.retry_delays[-1])
        return min(growing, covering)

    async def _wait(self, message: AbstractIncomingMessage, exc: WaitForClaim, attempt: int,
                    waits: int) -> None:
        """Back through a retry queue with the attempt not spent (the count stays as it came)."""
        delay = self._wait_delay(exc, waits)
        log.info("event.waits_for_claim", attempt=attempt, waits=waits + 1, delay_s=delay,
                 claim_ends_in_s=round(exc.seconds, 1), error=repr(exc)[:500])
        headers = self._failure_headers(message, exc, attempt - 1)
        headers[H_WAITS] = waits + 1
        await self.publisher.send_to_queue(self.spec.retry_queue(delay), message.body, headers,
                                           _copy_props(message))
        await message.ack()
        metrics.EVENTS_CONSUMED.labels(self.spec.name, "wait").inc()

    async def _dead_letter(self, message: AbstractIncomingMessage, exc: Exception, attempt: int) -> None:
        log.error(
            "event.dead_lettered", queue=self.spec.name, attempt=attempt, error=repr(exc)[:500],
            trace="".join(traceback.format_exception(exc))[-2000:],
        )
        await self.publisher.send_to_queue(
            self.spec.dlq, message.body, self._failure_headers(message, exc, attempt),
            _copy_props(message),
        )
        await message.ack()
        metrics.DEAD_LETTERS.labels(self.spec.name, type(exc).__name__).inc()
        metrics.EVENTS_CONSUMED.labels(self.spec.name, "dead_letter").inc()
