"""Consumer handlers of the AI responder: store what arrived and say a reply is due (the broker
holds it for the debounce); when it is due, let `service` reply."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from tistis_common.broker import PermanentError
from tistis_common.db import tenant_session, tenant_tx
from tistis_common.events import (
    ANNOTATION_KINDS,
    Event,
    InboundMessage,
    LeadCreated,
    ReplyDue,
    ReplyRequested,
)
from tistis_common.ids import stable_id
from tistis_common.logging import bound, get_logger

from . import repository as repo
from .service import Engine, respond

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

    Under the patient's in-process lock: in delivery order.
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


# A patient choosing an offered appointment slot, or tapping a reminder button: the scheduler
# answers those (books, confirms, offers, cancels).
SCHEDULER_CHOICE_PREFIXES = ("slot:", "appt:")


async def handle_inbound(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    if event.sender_type == "agent":
        async with tenant_tx(deps.engine.pool, event.tenant_id) as conn:
            if await repo.is_own_echo(conn, event):
                log.info("message.own_echo", platform_message_id=event.platform_message_id)
                return []
    engine = deps.engine
    # Every id the message names is locked before anything is read (the first await, so in
    # delivery order): a patient first seen by their WhatsApp user id and then with their phone
    # number is looked up only once the earlier message is stored.
    keys = [(event.tenant_id, event.channel.value, user)
            for user in (event.platform_user_id, *event.user_aliases)]
    async with engine.locks.local_all(keys):
        if event.user_aliases:  # one patient, several ids: the lead's own id is the one to use
            async with tenant_tx(engine.pool, event.tenant_id) as conn:
                known = await repo.canonical_user(conn, event)
            if known and known != event.platform_user_id:
                event = event.model_copy(update={
                    "platform_user_id": known,
                    "user_aliases": sorted({*event.user_aliases, event.platform_user_id} - {known})})
        async with tenant_session(engine.pool, event.tenant_id) as conn:
            stored = await store_inbound(conn, event)
    if event.sender_type == "agent":
        return stored.events  # staff answered in the platform's app: the AI steps back
    if event.kind in ANNOTATION_KINDS or event.standby:
        return stored.events  # changes what was said, or another app owns the thread
    if (event.choice_id or "").startswith(SCHEDULER_CHOICE_PREFIXES):
        return stored.events  # the scheduler answers this one
    # The debounce waits in the broker, not here: the rest of a burst arrives meanwhile, and
    # only the latest message's reply answers them all. A redelivery says it again (same id).
    return [*stored.events, ReplyDue(
        event_id=stable_id("reply-due", event.event_id), tenant_id=event.tenant_id,
        correlation_id=event.event_id, conversation_id=stored.conversation_id,
        message_id=stored.message_id, delay_ms=int(deps.debounce_seconds * 1000),
    )]


async def handle_reply_requested(event: ReplyRequested, deps: Deps) -> Sequence[Event]:
    async with tenant_tx(deps.engine.pool, event.tenant_id) as conn:
        conversation = await repo.conversation_for_reply(conn, event.conversation_id)
    if conversation is None:
        raise PermanentError(f"conversation {event.conversation_id} not found")
    return [ReplyDue(
        event_id=stable_id("reply-due", event.event_id), tenant_id=event.tenant_id,
        correlation_id=event.correlation_id or event.event_id,
        conversation_id=event.conversation_id, request_id=event.event_id,
    )]


async def handle_reply_due(event: Event, deps: Deps) -> Sequence[Event]:
    if not isinstance(event, ReplyDue):
        log.warning("event.ignored", event_type=getattr(event, "type", "?"))
        return []
    with bound(conversation_id=str(event.conversation_id)):
        return await respond(deps.engine, event)


async def handle(event: Event, deps: Deps) -> Sequence[Event]:
    """The queue carries both patient messages and staff reply requests, in one order."""
    if isinstance(event, InboundMessage):
        return await handle_inbound(event, deps)
    if isinstance(event, ReplyRequested):
        return await handle_reply_requested(event, deps)
    log.warning("event.ignored", event_type=getattr(event, "type", "?"))
    return []
