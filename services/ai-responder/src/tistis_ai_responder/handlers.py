"""Consumer handlers of the AI responder: store what arrived, then let `service` reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from tistis_common.broker import PermanentError
from tistis_common.db import tenant_tx
from tistis_common.events import (
    ANNOTATION_KINDS,
    Event,
    InboundMessage,
    LeadCreated,
    ReplyRequested,
)
from tistis_common.ids import stable_id
from tistis_common.logging import bound, get_logger

from . import repository as repo
from .service import Engine, Trigger, respond, respond_locked

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


async def store_inbound(conn: asyncpg.Connection, event: InboundMessage) -> Stored:
    """Lead, conversation and message, once per platform message id (a redelivery finds them).

    On a connection holding the patient's lock: in delivery order, never in the middle of a reply.
    """
    row = await repo.store_inbound(conn, event)
    if row["new"]:
        if event.user_aliases or event.referral or event.new_user_id:
            await repo.annotate_lead(conn, row["lead_id"], event)
        if event.target_id and event.kind in ANNOTATION_KINDS:
            applied = await repo.apply_to_target(conn, row["conversation_id"], event)
            log.info("message.annotation", kind=event.kind, target=event.target_id,
                     applied=applied)
    if row["message_id"] is None:  # its event id is stored, under another platform message id
        raise PermanentError(f"event {event.event_id} already stored for another message")
    if not row["new"]:
        log.info("message.duplicate", platform_message_id=event.platform_message_id)
    events: list[Event] = []
    if row["first"]:
        events.append(LeadCreated(
            event_id=stable_id("lead.created", row["lead_id"]), tenant_id=event.tenant_id,
            correlation_id=event.event_id, lead_id=row["lead_id"], channel=event.channel,
            name=event.display_name,
        ))
    log.info("message.stored", message_id=str(row["message_id"]),
             conversation_id=str(row["conversation_id"]), lead_id=str(row["lead_id"]),
             channel=event.channel.value, new=row["new"])
    return Stored(row["message_id"], row["conversation_id"], row["new"], events)


# A patient choosing an offered appointment slot: the scheduler books it and confirms.
SLOT_CHOICE_PREFIX = "slot:"


async def handle_inbound(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    if event.sender_type == "agent":
        async with tenant_tx(deps.engine.pool, event.tenant_id) as conn:
            if await repo.is_own_echo(conn, event):
                log.info("message.own_echo", platform_message_id=event.platform_message_id)
                return []
    engine = deps.engine
    if event.user_aliases:  # one patient, several ids: the lead's own id is the one to lock
        async with tenant_tx(engine.pool, event.tenant_id) as conn:
            known = await repo.canonical_user(conn, event)
        if known and known != event.platform_user_id:
            event = event.model_copy(update={
                "platform_user_id": known,
                "user_aliases": sorted({*event.user_aliases, event.platform_user_id} - {known})})
    key = (event.tenant_id, event.channel.value, event.platform_user_id)
    async with engine.locks.hold(engine.pool, key) as conn:
        stored = await store_inbound(conn, event)
        if event.sender_type == "agent":
            return stored.events  # staff answered in the platform's app: the AI steps back
        if event.kind in ANNOTATION_KINDS or event.standby:
            return stored.events  # changes what was said, or another app owns the thread
        if (event.choice_id or "").startswith(SLOT_CHOICE_PREFIX):
            return stored.events  # the scheduler answers this one with the confirmation
        trigger = Trigger(event.tenant_id, stored.conversation_id, event.event_id, key,
                          message_id=stored.message_id)
        if deps.debounce_seconds <= 0:  # reply under the same lock: no second round of locking
            with bound(conversation_id=str(stored.conversation_id)):
                return [*stored.events, *await respond_locked(conn, engine, trigger)]
    # Let the rest of a burst arrive (the lock is free meanwhile); only the latest message's
    # handler then replies. A redelivered message waits too, so that it cannot answer a burst
    # half-way through.
    await asyncio.sleep(deps.debounce_seconds)
    with bound(conversation_id=str(stored.conversation_id)):
        return [*stored.events, *await respond(engine, trigger)]


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
