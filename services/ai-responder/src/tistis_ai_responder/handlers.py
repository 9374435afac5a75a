"""Consumer handlers of the AI responder: store what arrived, then let `service` reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from tistis_common.broker import PermanentError
from tistis_common.db import conn_tenant_tx, tenant_tx
from tistis_common.events import Event, InboundMessage, LeadCreated, ReplyRequested
from tistis_common.ids import stable_id
from tistis_common.logging import bound, get_logger

from . import repository as repo
from .service import Engine, Trigger, respond

log = get_logger(__name__)


@dataclass(frozen=True)
class Deps:
    engine: Engine
    debounce_seconds: float


@dataclass(frozen=True)
class Stored:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    new: bool
    events: list[Event]


async def store_inbound(event: InboundMessage, deps: Deps) -> Stored:
    """Lead, conversation and message, once per platform message id (a redelivery finds them).

    Under the conversation's lock: in delivery order, and never in the middle of a reply.
    """
    key = (event.tenant_id, event.channel.value, event.platform_user_id)
    async with deps.engine.locks.hold(deps.engine.pool, key) as conn, \
            conn_tenant_tx(conn, event.tenant_id):
        lead_id = await repo.upsert_lead(conn, event)
        conversation = await repo.upsert_conversation(conn, event, lead_id)
        message_id = await repo.insert_inbound_message(conn, event, conversation["id"], lead_id)
        new = message_id is not None
        if new:
            await repo.touch_conversation_inbound(conn, conversation["id"], event)
        else:
            message_id = await repo.inbound_message_id(conn, event)
            log.info("message.duplicate", platform_message_id=event.platform_message_id)
        if event.sender_type == "agent":
            await repo.set_conversation_human(conn, conversation["id"])
        events: list[Event] = []
        if await repo.first_message_id(conn, lead_id) == message_id:
            events.append(LeadCreated(
                event_id=stable_id("lead.created", lead_id), tenant_id=event.tenant_id,
                correlation_id=event.event_id, lead_id=lead_id, channel=event.channel,
                name=event.display_name,
            ))
    assert message_id is not None
    log.info("message.stored", message_id=str(message_id), conversation_id=str(conversation["id"]),
             lead_id=str(lead_id), channel=event.channel.value, new=new)
    return Stored(message_id, conversation["id"], new, events)


# A patient choosing an offered appointment slot: the scheduler books it and confirms.
SLOT_CHOICE_PREFIX = "slot:"


async def handle_inbound(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    if event.sender_type == "agent":
        async with tenant_tx(deps.engine.pool, event.tenant_id) as conn:
            if await repo.is_own_echo(conn, event):
                log.info("message.own_echo", platform_message_id=event.platform_message_id)
                return []
    stored = await store_inbound(event, deps)
    if event.sender_type == "agent":
        return stored.events  # staff answered in the platform's app: the AI steps back
    if (event.choice_id or "").startswith(SLOT_CHOICE_PREFIX):
        return stored.events  # the scheduler answers this one with the confirmation
    if deps.debounce_seconds > 0:
        # Let the rest of a burst arrive; only the latest message's handler then replies. A
        # redelivered message waits too, so that it cannot answer a burst half-way through.
        await asyncio.sleep(deps.debounce_seconds)
    trigger = Trigger(event.tenant_id, stored.conversation_id, event.event_id,
                      (event.tenant_id, event.channel.value, event.platform_user_id),
                      message_id=stored.message_id)
    with bound(conversation_id=str(stored.conversation_id)):
        return [*stored.events, *await respond(deps.engine, trigger)]


async def handle_reply_requested(event: ReplyRequested, deps: Deps) -> Sequence[Event]:
    async with tenant_tx(deps.engine.pool, event.tenant_id) as conn:
        conversation = await repo.conversation_for_reply(conn, event.conversation_id)
    if conversation is None:
        raise PermanentError(f"conversation {event.conversation_id} not found")
    trigger = Trigger(event.tenant_id, event.conversation_id,
                      event.correlation_id or event.event_id,
                      (event.tenant_id, conversation["channel"], conversation["platform_user_id"]),
                      request_id=event.event_id)
    with bound(conversation_id=str(event.conversation_id)):
        return await respond(deps.engine, trigger)


async def handle(event: Event, deps: Deps) -> Sequence[Event]:
    """The queue carries both patient messages and staff reply requests, in one order."""
    if isinstance(event, InboundMessage):
        return await handle_inbound(event, deps)
    if isinstance(event, ReplyRequested):
        return await handle_reply_requested(event, deps)
    log.warning("event.ignored", event_type=getattr(event, "type", "?"))
    return []
