"""Publishing webhooks' events with broker confirms, batched across concurrent requests.

Same wire format and guarantees as `tistis_common.broker.Publisher` (the runtime's confirming
channel, `event_message`, mandatory routing): a request gets its 200 only once the broker
confirmed each of its events. What differs is the cost per event, which is most of the
ingress's CPU on the hot path:

- aio-pika's `Exchange.publish(timeout=...)` wraps the channel lock, the frame write and the
  confirm each in `asyncio.wait_for` (three tasks per message) and writes every message with its
  own socket write. Here the events of all requests that arrive in the same event-loop turn are
  marshalled into ONE frame buffer, written with one socket write, each with its own delivery
  tag and confirm future (aiormq's own bookkeeping, so returns and nacks resolve them as usual),
  and the broker confirms them in turn, usually with `multiple` acks covering many.
- One deadline covers a request's events (`asyncio.timeout`, no task).

Failure (closed channel, nack, return, timeout) raises: the caller answers 503 and the platform
retries; the stable event ids make the retry a duplicate that consumers drop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiormq import spec
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.header import ContentHeader
from tistis_common import metrics
from tistis_common.broker import Publisher, event_message
from tistis_common.events import Event, routing_key
from tistis_common.topology import EXCHANGE


class NotConfirmed(Exception):
    """The broker did not ack an event: it is not safely stored."""


class WebhookPublisher:
    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self._pending: list[tuple[Event, asyncio.Future]] = []
        self._flushing: asyncio.Task | None = None

    async def publish_all(self, events: Sequence[Event]) -> None:
        """Returns once the broker confirmed every event; raises otherwise."""
        channel = self.publisher.channel
        if channel.is_closed:
            raise ChannelInvalidStateError("publisher channel is closed")
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.publisher.timeout):
            underlay = await channel.get_underlay_channel()
            futures = []
            for event in events:
                future = loop.create_future()
                self._pending.append((event, future))
                futures.append(future)
            if self._flushing is None:
                # After this turn of the loop: requests arriving meanwhile join the batch.
                self._flushing = loop.create_task(self._flush(underlay))
            for future in futures:
                confirmation = await future
                if not isinstance(confirmation, spec.Basic.Ack):
                    raise NotConfirmed(f"broker answered {type(confirmation).__name__}")
        elapsed = time.perf_counter() - started
        for event in events:
            metrics.PUBLISH_CONFIRM_SECONDS.observe(elapsed)
            metrics.EVENTS_PUBLISHED.labels(event.type).inc()  # type: ignore[attr-defined]

    async def _flush(self, underlay) -> None:
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
    async def _write(underlay, batch: list[tuple[Event, asyncio.Future]]) -> None:
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


def _settle(underlay, message_id: str, confirmation: asyncio.Future, out: asyncio.Future) -> None:
    underlay.message_id_delivery_tag.pop(message_id, None)
    if out.done():
        return
    if confirmation.cancelled():
        out.set_exception(ChannelInvalidStateError("confirmation cancelled"))
    elif (error := confirmation.exception()) is not None:
        out.set_exception(error)
    else:
        out.set_result(confirmation.result())
