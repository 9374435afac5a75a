"""Deciding and producing one reply for a conversation.

Under the conversation's lock: if this trigger was already answered, the stored events are
returned again (a redelivery re-emits, never re-answers). Otherwise decide (skip, escalate,
fallback or model), call the model outside any transaction, then store the reply with its events
in one transaction, keyed by a deterministic id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import httpx
from tistis_common import metrics
from tistis_common.broker import PermanentError
from tistis_common.db import conn_tenant_tx
from tistis_common.events import (
    EVENT_ADAPTER,
    AppointmentRequested,
    Channel,
    ConversationEscalated,
    Event,
    LeadSignals,
    OutboundMessage,
    Signal,
)
from tistis_common.ids import stable_id
from tistis_common.logging import get_logger
from tistis_common.n8n import N8nError, load_ai_conversation, post_to_n8n
from tistis_common.rules import detect_signals, normalize
from tistis_common.settings import Settings
from tistis_common.tenant_labels import TENANT_LABELS

from . import repository as repo
from .context import ContextCache, TenantContext
from .fallback import ESCALATION_HOLDING, answer_from_catalog
from .locks import ConversationLocks, LockKey
from .model import Action, BadModelOutput, ClaudeResponder, ModelRejected, ModelReply
from .policy import describe_opening, matching_keyword, next_opening

log = get_logger(__name__)

Outcome = Literal["ai", "fallback", "escalated", "skipped"]
REQUEST_NUDGE = "(El equipo de la clínica pide que respondas ahora a esta conversación.)"


@dataclass(frozen=True)
class Trigger:
    """What asks for a reply: a stored patient message, or staff (ReplyRequested)."""

    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    correlation_id: uuid.UUID
    lock_key: LockKey
    message_id: uuid.UUID | None = None  # the patient message; None for a staff request
    request_id: uuid.UUID | None = None

    @property
    def reply_id(self) -> uuid.UUID:
        if self.message_id is not None:
            return stable_id("ai-reply", self.message_id)
        return stable_id("ai-reply", "requested", self.request_id)


@dataclass(frozen=True)
class Engine:
    pool: asyncpg.Pool
    locks: ConversationLocks
    responder: ClaudeResponder | None
    default_model: str
    history_messages: int
    settings: Settings
    http: httpx.AsyncClient  # n8n as a tenant's provider
    contexts: ContextCache = field(default_factory=ContextCache)


@dataclass
class Reply:
    text: str
    purpose: Literal["reply", "holding"]
    outcome: Outcome
    fallback: bool = False
    escalation: tuple[str, str] | None = None  # (reason, source)
    signals: list[Signal] = field(default_factory=list)
    signal_source: Literal["ai", "rules"] = "ai"
    appointments: list[Action] = field(default_factory=list)
    usage: ModelReply | None = None


@dataclass
class Plan:
    """The decision taken under the lock, before any slow call."""

    conversation: asyncpg.Record  # `repository.reply_state`
    ctx: TenantContext
    texts: list[str]
    situation: str
    closed_note: str | None
    reply: Reply | None = None  # decided without the model
    n8n: bool = False  # the tenant's n8n workflow answers, later, through the legacy callback
    history: list[dict] = field(default_factory=list)


async def respond(engine: Engine, trigger: Trigger) -> list[Event]:
    async with engine.locks.hold(engine.pool, trigger.lock_key) as conn:
        return await respond_locked(conn, engine, trigger)


async def respond_locked(conn: asyncpg.Connection, engine: Engine, trigger: Trigger) -> list[Event]:
    """`respond` on a connection that already holds the conversation's lock and tenant scope."""
    state = await repo.reply_state(conn, trigger.conversation_id, trigger.reply_id,
                                   engine.history_messages)
    if state is None:
        raise PermanentError(f"conversation {trigger.conversation_id} not found")
    if state["stored"]:
        log.info("reply.reemitted", message_id=str(trigger.reply_id))
        return _stored_events(state["stored_payload"])
    if state["handed_to_n8n"]:
        return []
    plan = await _plan(conn, engine, trigger, state)
    if plan is None:
        return []
    if plan.n8n and plan.reply is None:
        await _hand_to_n8n(conn, engine, trigger)
        return []
    reply = plan.reply or await _ask_model(engine, plan)
    return await _store(conn, engine, trigger, plan, reply)


def _stored_events(payload: dict) -> list[Event]:
    """The events a stored reply was sent with, exactly (same ids): a redelivery re-emits them."""
    return [EVENT_ADAPTER.validate_python(e) for e in payload["events"]]


async def _plan(conn: asyncpg.Connection, engine: Engine, trigger: Trigger,
                state: asyncpg.Record) -> Plan | None:
    requested = trigger.message_id is None
    if not requested:
        if state["latest_id"] != trigger.message_id:
            log.info("reply.superseded", message_id=str(trigger.message_id))
            return None  # a later message of the burst answers all of them
        if state["answered"]:
            return None
        if state["status"] != "active" or state["spam"]:
            reason = "spam" if state["spam"] else state["status"]
            log.info("reply.skipped", reason=reason)
            tenant = await TENANT_LABELS.load(conn, trigger.tenant_id)
            metrics.AI_REPLIES.labels(tenant, "skipped").inc()
            return None
    ctx = await _context(conn, engine, trigger.tenant_id, state["context_version"])
    texts = list(state["unanswered"])
    now = datetime.now(UTC)
    opening = next_opening(ctx.business_hours, ctx.timezone, now)
    closed_note = describe_opening(opening, now) if opening else None
    plan = Plan(state, ctx, texts, _situation(ctx, now, closed_note), closed_note)
    if not requested:
        keyword = matching_keyword(texts, ctx.escalation_keywords)
        if keyword is not None:
            plan.reply = _escalation(plan, f"keyword: {keyword}", "keyword")
            return plan
        if state["unresolved_inbound"] > ctx.auto_escalate_after:
            reason = f"{state['unresolved_inbound']} patient messages without resolution"
            plan.reply = _escalation(plan, reason, "auto")
            return plan
    if ctx.provider == "n8n":
        plan.n8n = True
        return plan
    if ctx.provider != "claude" or engine.responder is None or engine.responder.breaker.is_open:
        plan.reply = _fallback(plan)
        return plan
    plan.history = state["history"]
    return plan


async def _hand_to_n8n(conn: asyncpg.Connection, engine: Engine, trigger: Trigger) -> None:
    """Post the guide's `ai-conversation` event; n8n answers through the legacy callback. Marked
    once posted, so a redelivery does not post again (a crash in between posts twice: n8n's own
    answer then arrives twice at worst, each with the dispatcher's idempotency)."""
    async with conn_tenant_tx(conn, trigger.tenant_id):
        payload = await load_ai_conversation(conn, trigger.tenant_id, trigger.conversation_id,
                                             engine.history_messages)
    try:
        await post_to_n8n(engine.http, engine.settings, payload)
    except N8nError as exc:
        raise RuntimeError(str(exc)) from exc  # transient for the runner: retried, then DLQ
    async with conn_tenant_tx(conn, trigger.tenant_id):
        await repo.mark_handed_to_n8n(conn, trigger.tenant_id, trigger.reply_id)
    log.info("reply.handed_to_n8n", conversation_id=str(trigger.conversation_id))


async def _context(conn: asyncpg.Connection, engine: Engine, tenant_id: uuid.UUID,
                   version: int) -> TenantContext:
    """The tenant's context, read again only when its `context_version` moved (an edit)."""
    ctx = engine.contexts.get(tenant_id, version)
    if ctx is None:
        row = await repo.ai_context(conn, tenant_id)
        if row is None:
            raise PermanentError(f"tenant {tenant_id} not found")
        ctx = TenantContext.from_rows(tenant_id, dict(row), await repo.catalog(conn),
                                      engine.default_model)
        engine.contexts.put(tenant_id, version, ctx)
    return ctx


def _situation(ctx: TenantContext, now: datetime, closed_note: str | None) -> str:
    if closed_note is None:
        return "La clínica está dentro de su horario de atención ahora mismo."
    return (f"Ahora la clínica está fuera de su horario de atención; vuelve a atender "
            f"{closed_note}. Díselo al paciente con amabilidad y ayúdale igualmente con lo que "
            f"puedas responder con este contexto.")


def _with_hours(text: str, closed_note: str | None) -> str:
    if closed_note is None:
        return text
    return f"{text} Estamos fuera de horario; el equipo de la clínica atiende de nuevo {closed_note}."


def _escalation(plan: Plan, reason: str, source: str) -> Reply:
    return Reply(_with_hours(ESCALATION_HOLDING, plan.closed_note), "holding", "escalated",
                 escalation=(reason, source))


def _fallback(plan: Plan) -> Reply:
    found = answer_from_catalog(plan.ctx, plan.texts)
    reply = Reply(_with_hours(found.text, plan.closed_note), "reply" if found.answered else "holding",
                  "fallback", fallback=True, signals=detect_signals("\n".join(plan.texts)),
                  signal_source="rules")
    if not found.answered:
        reply.escalation = ("the fallback found no answer in the FAQs", "ai")
    elif found.wants_booking:
        reply.escalation = ("appointment request while the assistant is unavailable", "ai")
    return reply


async def _ask_model(engine: Engine, plan: Plan) -> Reply:
    assert engine.responder is not None
    nudge = REQUEST_NUDGE
    try:
        result = await engine.responder.reply(plan.ctx, plan.history, plan.situation, nudge)
    except ModelRejected as exc:
        raise PermanentError(str(exc)) from exc
    except BadModelOutput as exc:
        # Never forward what the model did not give as a reply: answer from the catalog instead.
        log.warning("ai.bad_output", error=str(exc)[:300])
        return _fallback(plan)
    answer = result.answer
    escalate = next((a for a in answer.actions if a.type == "escalate"), None)
    appointments = [a for a in answer.actions if a.type == "schedule_appointment"]
    reply = Reply(answer.reply, "reply", "ai", signals=list(dict.fromkeys(answer.signals)),
                  appointments=appointments, usage=result)
    if escalate is not None:
        reply.purpose, reply.outcome = "holding", "escalated"
        reply.escalation = (escalate.reason or "the assistant asked for a human", "ai")
    return reply


def _match(name: str | None, options: list[tuple[uuid.UUID, str]]) -> tuple[uuid.UUID | None, str | None]:
    if not name:
        return None, None
    wanted = normalize(name)
    for option_id, option_name in options:
        plain = normalize(option_name)
        if plain == wanted or wanted in plain or plain in wanted:
            return option_id, option_name
    return None, name


def _events(trigger: Trigger, plan: Plan, reply: Reply) -> list[Event]:
    c, reply_id = plan.conversation, trigger.reply_id
    tenant_id, correlation_id = trigger.tenant_id, trigger.correlation_id
    channel = Channel(c["channel"])
    events: list[Event] = [OutboundMessage(
        event_id=stable_id("outbound", reply_id), channel=channel, message_id=reply_id,
        conversation_id=c["id"], lead_id=c["lead_id"], recipient_id=c["platform_user_id"],
        sender_type="ai", purpose=reply.purpose, kind="text", text=reply.text,
        tenant_id=tenant_id, correlation_id=correlation_id,
    )]
    if reply.escalation is not None:
        reason, source = reply.escalation
        events.append(ConversationEscalated(
            event_id=stable_id("escalated", reply_id), conversation_id=c["id"],
            lead_id=c["lead_id"], channel=channel, reason=reason, source=source,  # type: ignore[arg-type]
            tenant_id=tenant_id, correlation_id=correlation_id,
        ))
    if reply.signals:
        events.append(LeadSignals(
            event_id=stable_id("signals", reply_id), lead_id=c["lead_id"], conversation_id=c["id"],
            message_id=trigger.message_id, signals=reply.signals, source=reply.signal_source,
            tenant_id=tenant_id, correlation_id=correlation_id,
        ))
    services = [(s.id, s.name) for s in plan.ctx.services]
    branches = [(b.id, b.name) for b in plan.ctx.branches]
    for i, action in enumerate(reply.appointments):
        service_id, service_name = _match(action.service, services)
        branch_id, branch_name = _match(action.branch, branches)
        events.append(AppointmentRequested(
            event_id=stable_id("appointment", reply_id, i), lead_id=c["lead_id"],
            conversation_id=c["id"], service_id=service_id, service_name=service_name,
            branch_id=branch_id, branch_name=branch_name,
            preferred_dates=action.preferred_dates, source="ai",
            tenant_id=tenant_id, correlation_id=correlation_id,
        ))
    return events


async def _store(conn: asyncpg.Connection, engine: Engine, trigger: Trigger, plan: Plan,
                 reply: Reply) -> list[Event]:
    events = _events(trigger, plan, reply)
    usage = reply.usage
    inserted = await repo.store_reply(
        conn, message_id=trigger.reply_id, tenant_id=trigger.tenant_id,
        conversation_id=trigger.conversation_id, lead_id=plan.conversation["lead_id"],
        channel=plan.conversation["channel"], text=reply.text, purpose=reply.purpose,
        payload={"events": [e.model_dump(mode="json") for e in events],
                 "trigger_message_id": str(trigger.message_id) if trigger.message_id else None},
        fallback=reply.fallback, model=usage.model if usage else None,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        cache_read_tokens=usage.cache_read_tokens if usage else None,
        latency_ms=usage.latency_ms if usage else None,
        escalation_reason=reply.escalation[0] if reply.escalation else None,
        resolved=reply.escalation is None and bool(reply.appointments),
    )
    if not inserted:  # another replica stored this very reply first: send what it stored
        stored = await repo.stored_reply(conn, trigger.reply_id)
        assert stored is not None
        return _stored_events(stored["payload"])
    tenant = await TENANT_LABELS.load(conn, trigger.tenant_id)  # cached: one query per tenant
    metrics.AI_REPLIES.labels(tenant, "fallback" if reply.fallback else reply.outcome).inc()
    if usage is not None:
        for kind, value in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_tokens),
                            ("cache_write", usage.cache_write_tokens)):
            metrics.AI_TOKENS.labels(tenant, kind).inc(value)
    log.info("reply.stored", message_id=str(trigger.reply_id), outcome=reply.outcome,
             fallback=reply.fallback, purpose=reply.purpose,
             escalated=reply.escalation is not None)
    return events
