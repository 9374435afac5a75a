"""Publishing a webhook's events with broker confirms, cheaply enough for the hot path.

Same wire format and guarantees as `tistis_common.broker.Publisher` (it uses that publisher's
confirming channel and `event_message`), without its per-message costs: aio-pika's
`Exchange.publish(timeout=...)` wraps the channel lock, the frame write and the confirm each in
`asyncio.wait_for`, three tasks per message. Here one deadline covers all of a request's events
(`asyncio.timeout`, no task), every event of every concurrent request is in flight at once on
the one confirming channel, and the broker's confirms (often `multiple`, one frame for many
deliveries) come back batched across requests.

A nack or a return (no queue bound) is a failure, as is a closed channel: the caller answers
503 and the platform retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiormq import spec
from aiormq.exceptions import ChannelInvalidStateError
from tistis_common import metrics
from tistis_common.broker import Publisher, event_message
from tistis_common.events import Event, routing_key
from tistis_common.topology import EXCHANGE


class NotConfirmed(Exception):
    """The broker nacked an event: it is not safely stored."""


class WebhookPublisher:
    def __init__(self, publisher: Publisher):
        self.publisher = publisher

    async def publish_all(self, events: Sequence[Event]) -> None:
        """Returns once the broker confirmed every event; raises otherwise."""
        channel = self.publisher.channel
        if channel.is_closed:
            raise ChannelInvalidStateError("publisher channel is closed")
        started = time.perf_counter()
        async with asyncio.timeout(self.publisher.timeout):
            underlay = await channel.get_underlay_channel()
            if len(events) == 1:
                await self._publish(underlay, events[0])
            else:
                await asyncio.gather(*(self._publish(underlay, e) for e in events))
        elapsed = time.perf_counter() - started
        for event in events:
            metrics.PUBLISH_CONFIRM_SECONDS.observe(elapsed)
            metrics.EVENTS_PUBLISHED.labels(event.type).inc()  # type: ignore[attr-defined]

    @staticmethod
    async def _publish(underlay, event: Event) -> None:
        message = event_message(event)
        confirmation = await underlay.basic_publish(
            message.body, exchange=EXCHANGE, routing_key=routing_key(event),
            properties=message.properties, mandatory=True,
        )
        if not isinstance(confirmation, spec.Basic.Ack):
            raise NotConfirmed(f"broker answered {type(confirmation).__name__}")
