"""Broker topology, declared from code, idempotently, by every service at start.

One durable topic exchange. Each consumer purpose has a durable quorum queue; failed events go
to per-delay retry queues (`<queue>.delay.<ms>ms`, TTL then dead-letter straight back to the
queue) and, after the last attempt, to `<queue>.dlq` with the error in their headers.

Every queue is a quorum queue (replicated; classic queues are not since RabbitMQ 4.0). A retry
queue dead-letters at least once (`x-dead-letter-strategy: at-least-once`, which needs
`x-overflow: reject-publish`): the broker keeps an expired event until the work queue confirmed
it, instead of dropping it when the hand-over fails. Brokers that ran an older version of this
code hold classic retry queues named `<queue>.retry.<ms>ms`: they still dead-letter into the
work queue, so they empty themselves, and each start deletes the ones that are empty.

On RabbitMQ 4.x a quorum queue has a delivery limit of 20 unless told otherwise, and
`tistis dlq list/show` peek by get-and-requeue: the broker policy `tistis-dlq`
(`delivery-limit: -1` on `.dlq$`, from scripts/infra.sh, the compose definitions and the k8s
topology) keeps a dead letter from being deleted by looking at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from tistis_common.events import (
    CHOICE_PATTERN,
    DUE_NOW,
    MEDIA_PENDING_PATTERN,
    AppointmentRequested,
    Channel,
    ConversationEscalated,
    ConversationReleased,
    InboundMessage,
    LeadClassified,
    LeadCreated,
    LeadScoreSet,
    LeadSignals,
    MessageStatus,
    OptOutChanged,
    OutboundMessage,
    ReplyDue,
    ReplyRequested,
    ReplyStarted,
    TemplateStatusChanged,
    routing_pattern,
)

EXCHANGE = "tistis.events"
# Events no queue is bound for (a notification nobody listens to yet, such as an escalation
# when no realtime feed runs) land here instead of failing their publisher; bounded, so it
# cannot grow without end, and inspectable, so a missing binding can be seen.
UNROUTED = "tistis.unrouted"
# The realtime feed's events (REALTIME_BINDINGS) are also bound to this queue, which keeps
# nothing (length 0): with no feed listening they are dropped, as a broadcast nobody hears is,
# instead of filling `tistis.unrouted` (and the broker's disk) with one `lead.created` per new
# patient. A queue, not a queueless exchange: the publisher's `mandatory` needs a queue.
BROADCAST = "tistis.broadcast"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[str, ...]
    # A message redelivered this often (a consumer crashing on it again and again) goes to the DLQ.
    delivery_limit: int = 20

    @property
    def arguments(self) -> dict[str, Any]:
        # Quorum queues survive a broker restart; delay queues are classic (TTL + DLX).
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq,
        }

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    def retry_queue(self, delay_seconds: float) -> str:
        return f"{self.name}.delay.{int(delay_seconds * 1000)}ms"

    def retry_arguments(self, delay_seconds: float) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": int(delay_seconds * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def legacy_retry_queue(self, delay_seconds: float) -> str:
        """The classic retry queue of versions before quorum retry queues."""
        return f"{self.name}.retry.{int(delay_seconds * 1000)}ms"


@dataclass(frozen=True)
class DelayQueue:
    """No consumer: each message waits its own TTL (`expiration`, from `ReplyDue.delay_ms`), then
    the broker moves it to `target`. A quorum queue with at-least-once dead-lettering, so that
    neither a broker restart nor the move itself loses a waiting message."""

    name: str
    bindings: tuple[str, ...]
    target: str

    @property
    def arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.target,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # what at-least-once dead-lettering requires
        }


# Patient messages and staff requests for one conversation share a queue, so order holds.
AI_INBOUND = QueueSpec(
    "ai-responder.inbound", (routing_pattern(InboundMessage), routing_pattern(ReplyRequested))
)
# Replies that are due: one consumer slot per model call in flight (`AI_MAX_IN_FLIGHT`). Fed
# by the delay queue below, and directly by replies due at once.
AI_REPLIES = QueueSpec("ai-responder.replies", (f"{routing_pattern(ReplyDue)}.{DUE_NOW}",))
# The burst debounce, in the broker instead of in a consumer slot.
AI_DEBOUNCE = DelayQueue("ai-responder.debounce", (routing_pattern(ReplyDue),), AI_REPLIES.name)
DISPATCHER_OUTBOUND = {
    channel: QueueSpec(f"dispatcher.{channel}", (routing_pattern(OutboundMessage, channel),))
    for channel in Channel
}
DISPATCHER_STATUS = QueueSpec("dispatcher.status", (routing_pattern(MessageStatus),))
# Patient messages with a file not fetched yet (`media.received.<channel>`): the dispatcher holds
# the platform tokens, fetches and keeps the file, then forwards the message as
# `message.received.<channel>` (tistis_dispatcher.media).
DISPATCHER_MEDIA = QueueSpec("dispatcher.media", (MEDIA_PENDING_PATTERN,))
# Best-effort read receipts and typing indicators, apart from the sends so they never delay one.
DISPATCHER_TYPING = QueueSpec("dispatcher.typing", (routing_pattern(ReplyStarted),))
# What changes a lead's or conversation's state without being a message: marketing opt-outs
# (WhatsApp user_preferences) and escalations / hand-backs decided by staff or the callback.
# The ai-responder writes leads and conversations, so it applies them.
AI_STATE = QueueSpec("ai-responder.state", (
    routing_pattern(OptOutChanged), routing_pattern(ConversationEscalated),
    routing_pattern(ConversationReleased),
))
SCORER_SIGNALS = QueueSpec(
    "scorer.signals", (routing_pattern(LeadSignals), routing_pattern(LeadScoreSet))
)
SCHEDULER_REQUESTS = QueueSpec("scheduler.requests", (routing_pattern(AppointmentRequested),))
# Patients choosing an offered slot (list row ids `slot:<branch_id>:<service_id>:<iso utc>`).
SCHEDULER_CHOICES = QueueSpec("scheduler.choices", (CHOICE_PATTERN,))

# Webhook items the ingress could not read (a malformed entry among good ones): nothing is
# bound to it; the ingress puts each straight into its `.dlq` with the error, where `tistis dlq`
# lists them, and a replay brings them back here, where the ingress reads them again.
INGRESS_ITEMS = QueueSpec("ingress.webhook-items", ())
# WhatsApp template approvals from the webhook: the ingress owns `whatsapp_templates`.
INGRESS_TEMPLATES = QueueSpec("ingress.template-status", (routing_pattern(TemplateStatusChanged),))

ALL_QUEUES: tuple[QueueSpec, ...] = (
    INGRESS_ITEMS,
    INGRESS_TEMPLATES,
    AI_INBOUND,
    AI_REPLIES,
    *DISPATCHER_OUTBOUND.values(),
    DISPATCHER_STATUS,
    DISPATCHER_MEDIA,
    DISPATCHER_TYPING,
    AI_STATE,
    SCORER_SIGNALS,
    SCHEDULER_REQUESTS,
    SCHEDULER_CHOICES,
)

# The realtime feed: each ingress instance binds its own exclusive, auto-deleted queue (not
# declared here) to these while SSE clients listen to it, and fans out to them.
REALTIME_BINDINGS: tuple[str, ...] = (
    routing_pattern(LeadCreated),
    routing_pattern(InboundMessage),
    routing_pattern(OutboundMessage),
    routing_pattern(ConversationEscalated),
    routing_pattern(ConversationReleased),
    routing_pattern(LeadClassified),
)


# The broker policy that keeps dead letters (RabbitMQ >= 4.0 only: older brokers have no default
# delivery limit and refuse -1). The same definition is in scripts/infra.sh, the compose
# definitions and deploy/k8s (checked by tests/deploy).
DLQ_POLICY_NAME = "tistis-dlq"
DLQ_POLICY: dict[str, Any] = {
    "pattern": r"\.dlq$", "apply-to": "quorum_queues", "priority": 1,
    "definition": {"delivery-limit": -1},
}


async def declare_topology(
    channel: AbstractChannel,
    retry_delays: Sequence[float],
    queues: Sequence[QueueSpec] = ALL_QUEUES,
    delays: Sequence[DelayQueue] = (AI_DEBOUNCE,),
) -> AbstractExchange:
    unrouted = await channel.declare_exchange(UNROUTED, aio_pika.ExchangeType.FANOUT, durable=True)
    parked = await channel.declare_queue(
        UNROUTED, durable=True,
        arguments={"x-max-length": 10_000, "x-overflow": "drop-head", "x-message-ttl": 86_400_000},
    )
    await parked.bind(unrouted)
    exchange = await channel.declare_exchange(
        EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True,
        arguments={"alternate-exchange": UNROUTED},
    )
    broadcast = await channel.declare_queue(
        BROADCAST, durable=True, arguments={"x-max-length": 0, "x-overflow": "drop-head"})
    for pattern in REALTIME_BINDINGS:
        await broadcast.bind(exchange, routing_key=pattern)
    for spec in queues:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for pattern in spec.bindings:
            await queue.bind(exchange, routing_key=pattern)
        await channel.declare_queue(spec.dlq, durable=True, arguments={"x-queue-type": "quorum"})
        for delay in retry_delays:
            await channel.declare_queue(
                spec.retry_queue(delay), durable=True, arguments=spec.retry_arguments(delay)
            )
    for delay_queue in delays:
        queue = await channel.declare_queue(delay_queue.name, durable=True,
                                            arguments=delay_queue.arguments)
        for pattern in delay_queue.bindings:
            await queue.bind(exchange, routing_key=pattern)
    return exchange


async def drop_legacy_retry_queues(
    connection: AbstractConnection, retry_delays: Sequence[float],
    queues: Sequence[QueueSpec] = ALL_QUEUES,
) -> list[str]:
    """Deletes the old classic retry queues that are empty (until then each drains itself into
    its work queue); returns the names still waiting. A refused delete closes its channel, so
    each runs on a channel of its own."""
    waiting = []
    for spec in queues:
        for delay in retry_delays:
            name = spec.legacy_retry_queue(delay)
            channel = await connection.channel()
            try:
                await channel.queue_delete(name, if_empty=True)  # absent: deleted already, ok
            except aio_pika.exceptions.ChannelPreconditionFailed:
                waiting.append(name)  # not empty yet: the next start tries again
            finally:
                if not channel.is_closed:
                    await channel.close()
    return waiting
