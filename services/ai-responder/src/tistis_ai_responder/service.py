"""The ai-responder's decisions (SQL in `repository`, entry points in `handlers`).

What arrives (the end of this module): a patient message is stored once, under the patient's
lock, and returns the `ReplyDue` the broker holds for the debounce; a staff request is due at
once; state changes (opt-outs, escalations, hand-backs) are applied.

A reply, when its `ReplyDue` comes due, under the conversation's reply lease (`lease`): if this
trigger was already answered, the events kept with it are returned again (a redelivery
re-emits, never re-answers). Otherwise decide (skip, escalate, fallback or model) in one short
read, call the model with no connection held, then store the reply with its events and give
the lease back in one statement, keyed by a deterministic id. A conversation whose lease
another attempt holds waits in the delay queue.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from tistis_common import idempotency, metrics
from tistis_common.broker import PermanentError
from tistis_common.db import conn_tenant_tx, tenant_session, tenant_tx
from tistis_common.events import (
    ANNOTATION_KINDS,
    EVENT_ADAPTER,
    AppointmentRequested,
    Channel,
    ConversationEscalated,
    ConversationReleased,
    Event,
    InboundMessage,
    LeadCreated,
    LeadSignals,
    ListSection,
    OptOutChanged,
    OutboundMessage,
    ReplyDue,
    ReplyRequested,
    ReplyStarted,
    Signal,
    TemplateRef,
)
from tistis_common.ids import stable_id
from tistis_common.logging import get_logger
from tistis_common.tenant_labels import TENANT_LABELS
from tistis_common.topology import AI_REPLIES
from tistis_common.vocabulary import is_scheduler_choice

from . import content, tools
from . import repository as repo
from .context import Service, TenantContext
from .fallback import answer_from_catalog
from .lease import LOCK_CLASS, to_the_end
from .model import BadModelOutput, ModelRejected, ModelReply
from .n8n import N8nError, build_ai_conversation_payload, post_to_n8n
from .phrases import Lang, detect, is_word, say
from .policy import describe_opening, local_now_text, matching_keyword, next_opening
from .signals import detect_signals

if TYPE_CHECKING:
    import asyncpg

    from .deps import Deps

log = get_logger(__name__)

Outcome = Literal["ai", "fallback", "escalated", "skipped"]
REQUEST_NUDGE = "(El equipo de la clínica pide que respondas ahora a esta conversación.)"


@dataclass(frozen=True)
class Trigger:
    """What asks for a reply: a stored patient message, or staff (ReplyRequested)."""

    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    correlation_id: uuid.UUID
    message_id: uuid.UUID | None = None  # the patient message; None for a staff request
    request_id: uuid.UUID | None = None

    @classmethod
    def of(cls, due: ReplyDue) -> Trigger:
        return cls(due.tenant_id, due.conversation_id, due.correlation_id or due.event_id,
                   due.message_id, due.request_id)

    @property
    def reply_id(self) -> uuid.UUID:
        if self.message_id is not None:
            return stable_id("ai-reply", self.message_id)
        return stable_id("ai-reply", "requested", self.request_id)


@dataclass
class Reply:
    text: str
    purpose: Literal["reply", "holding"]
    outcome: Outcome
    fallback: bool = False
    escalation: tuple[str, str] | None = None  # (reason, source)
    signals: list[Signal] = field(default_factory=list)
    signal_source: Literal["ai", "rules"] = "ai"
    bookings: list[tools.Booking] = field(default_factory=list)
    usage: ModelReply | None = None
    sections: list[ListSection] = field(default_factory=list)  # a services menu
    quote: tools.Quote | None = None
    fallback_template: TemplateRef | None = None  # the quote once the window closed
    interests: list[Service] = field(default_factory=list)
    opt_out: bool | None = None  # True: the patient opted out by word; False: back in


@dataclass
class ReplyPlan:
    """The decision taken under the lock, before any slow call."""

    conversation: repo.ReplyState
    clinic: TenantContext
    texts: list[str]
    situation: str
    closed_note: str | None
    reply: Reply | None = None  # decided without the model
    n8n: dict | None = None  # the guide's `ai-conversation` payload for the tenant's n8n workflow
    history: list[dict] = field(default_factory=list)
    files: dict = field(default_factory=dict)  # the conversation's latest files (content.py)
    lang: Lang = "es"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    choice: Service | None = None  # a service the patient picked from the menu


# The consumer whose kept events (`tistis_common.idempotency`, keyed by the reply's id) a
# redelivery of a stored reply re-emits.
REPLIES_CONSUMER = AI_REPLIES.name

# A due reply whose conversation another attempt is composing waits this long, then looks again.
LEASE_WAIT_MS = 500


async def respond(deps: Deps, due: ReplyDue) -> list[Event]:
    trigger = Trigger.of(due)
    wait: list[Event] = [due.model_copy(update={"delay_ms": max(due.delay_ms, LEASE_WAIT_MS)})]
    attempt = deps.attempts.begin(trigger.conversation_id)
    if attempt is None:  # this process is composing the conversation's reply right now
        metrics.AI_REPLY_WAITS.inc()
        return wait
    try:
        return await _respond_leased(deps, trigger, attempt, wait)
    finally:
        deps.attempts.end(trigger.conversation_id, attempt)


async def _respond_leased(deps: Deps, trigger: Trigger, attempt: uuid.UUID,
                          wait: list[Event]) -> list[Event]:
    async with tenant_session(deps.pool, trigger.tenant_id) as conn:
        try:
            # Inside the try: cancelled while the claim runs, the lease may be ours all the same.
            claim = await repo.claim_and_read(conn, trigger.conversation_id, trigger.reply_id,
                                              deps.settings.ai_history_messages,
                                              deps.attempts.lease.key, attempt, LOCK_CLASS)
            if claim is None:
                raise PermanentError(f"conversation {trigger.conversation_id} not found")
            if not claim.claimed:
                log.info("reply.waiting", message_id=str(trigger.reply_id))
                metrics.AI_REPLY_WAITS.inc()
                return wait
            state: repo.ReplyState | None = claim.state
            if claim.claimed_through != claim.state.answered_through:
                state = await repo.reply_state(conn, trigger.conversation_id, trigger.reply_id,
                                               deps.settings.ai_history_messages)
            decided = await _decide(conn, deps, trigger, state)
            if not isinstance(decided, ReplyPlan):
                await repo.release_reply(conn, trigger.conversation_id, attempt)
                return decided
        except BaseException:
            await deps.attempts.give_back(trigger.tenant_id, trigger.conversation_id, attempt)
            raise
    plan = decided
    # No connection held from here until the reply is stored: the model takes seconds.
    try:
        if plan.n8n is not None and plan.reply is None:
            await to_the_end(_hand_to_n8n(deps, trigger, plan.n8n, attempt))
            return []
        reply = plan.reply or await _ask_model(deps, trigger, plan)
        return await to_the_end(_store_reply(deps, trigger, plan, reply, attempt))
    except BaseException:
        await deps.attempts.give_back(trigger.tenant_id, trigger.conversation_id, attempt)
        raise


async def _decide(conn: asyncpg.Connection, deps: Deps, trigger: Trigger,
                  state: repo.ReplyState | None) -> ReplyPlan | list[Event]:
    """The plan for a reply, or what to return instead (the stored events, or nothing)."""
    if state is None:
        raise PermanentError(f"conversation {trigger.conversation_id} not found")
    if state.stored:
        log.info("reply.reemitted", message_id=str(trigger.reply_id))
        assert state.stored_payload is not None
        return await _stored_events(conn, trigger, state.stored_payload)
    if state.handed_to_n8n:
        return []
    plan = await _plan(conn, deps, trigger, state)
    if plan is None:
        return []
    if plan.n8n is not None:
        async with conn_tenant_tx(conn, trigger.tenant_id):
            found = await repo.ai_conversation(conn, trigger.tenant_id, trigger.conversation_id,
                                               deps.settings.ai_history_messages)
        plan.n8n = build_ai_conversation_payload(trigger.tenant_id, found.conversation,
                                                 found.messages, found.lead, found.context)
    return plan


async def _stored_events(conn: asyncpg.Connection, trigger: Trigger,
                         payload: dict) -> list[Event]:
    """The events a stored reply was sent with, exactly (same ids, same order): a redelivery
    re-emits what the shared outbox kept. A reply stored before the outbox (or by a replica of
    the version before it, during a rolling upgrade) has them only in its payload."""
    kept = await idempotency.kept(conn, REPLIES_CONSUMER, trigger.reply_id)
    return kept or [EVENT_ADAPTER.validate_python(e) for e in payload["events"]]


async def _plan(conn: asyncpg.Connection, deps: Deps, trigger: Trigger,
                state: repo.ReplyState) -> ReplyPlan | None:
    requested = trigger.message_id is None
    if not requested:
        if state.latest_id != trigger.message_id:
            log.info("reply.superseded", message_id=str(trigger.message_id))
            return None  # a later message of the burst answers all of them
        if state.answered:
            return None
        if state.status != "active" or state.spam:
            reason = "spam" if state.spam else state.status
            log.info("reply.skipped", reason=reason)
            tenant = await TENANT_LABELS.load(conn, trigger.tenant_id)
            metrics.AI_REPLIES.labels(tenant, "skipped").inc()
            return None
    clinic = await _context(conn, deps, trigger.tenant_id, state.context_version)
    texts = list(state.unanswered)
    now = datetime.now(UTC)
    lang = detect(texts, clinic.language)
    opening = next_opening(clinic.business_hours, clinic.timezone, now)
    closed_note = describe_opening(opening, now, lang) if opening else None
    choice = await _menu_choice(conn, clinic, trigger, state, texts)
    plan = ReplyPlan(state, clinic, texts, situation_text(clinic, now, closed_note, choice),
                     closed_note, lang=lang, now=now, choice=choice)
    if not requested and texts:
        opt = _opt_out_word(plan, texts[-1])
        if opt is not None:
            if opt.opt_out == (state.opted_out_at is not None):
                log.info("reply.skipped", reason="opt_out_unchanged")
                return None  # one confirmation only: the state is already what they asked
            plan.reply = opt
            return plan
    if not requested:
        keyword = matching_keyword(texts, clinic.escalation_keywords)
        if keyword is not None:
            plan.reply = _escalation(plan, f"keyword: {keyword}", "keyword")
            return plan
        if state.unresolved_inbound > clinic.auto_escalate_after:
            reason = f"{state.unresolved_inbound} patient messages without resolution"
            plan.reply = _escalation(plan, reason, "auto")
            return plan
    if content.mentions_files(state.history):
        plan.files = await content.files_for(conn, trigger.conversation_id)
        if not requested and content.voice_note_unheard(state.latest_id, plan.files):
            plan.reply = Reply(content.WRITE_PLEASE, "reply", "fallback", fallback=True)
            return plan
    if clinic.provider == "n8n":
        plan.n8n = {}
        return plan
    if clinic.provider != "claude" or deps.responder is None or not deps.responder.breaker.allow():
        plan.reply = _fallback(plan)
        return plan
    plan.history = state.history
    return plan


async def _hand_to_n8n(deps: Deps, trigger: Trigger, payload: dict,
                       attempt: uuid.UUID) -> None:
    """Post the guide's `ai-conversation` event; n8n answers through the legacy callback. Marked
    once posted, so a redelivery does not post again (a crash in between posts twice: n8n's own
    answer then arrives twice at worst, each with the dispatcher's idempotency)."""
    try:
        await post_to_n8n(deps.http, deps.settings, payload)
    except N8nError as exc:
        raise RuntimeError(str(exc)) from exc  # transient for the runner: retried, then DLQ
    async with tenant_session(deps.pool, trigger.tenant_id) as conn:
        await repo.mark_handed_to_n8n(conn, trigger.tenant_id, trigger.reply_id,
                                      trigger.conversation_id, attempt)
    log.info("reply.handed_to_n8n", conversation_id=str(trigger.conversation_id))


async def _context(conn: asyncpg.Connection, deps: Deps, tenant_id: uuid.UUID,
                   version: int) -> TenantContext:
    """The tenant's context, read again only when its `context_version` moved (an edit)."""
    clinic = deps.contexts.get(tenant_id, version)
    if clinic is None:
        clinic = await repo.tenant_context(conn, tenant_id,
                                           default_model=deps.settings.anthropic_model,
                                           opt_out_words=deps.settings.opt_out_words,
                                           opt_in_words=deps.settings.opt_in_words)
        if clinic is None:
            raise PermanentError(f"tenant {tenant_id} not found")
        deps.contexts.put(tenant_id, version, clinic)
    return clinic


async def _menu_choice(conn: asyncpg.Connection, clinic: TenantContext, trigger: Trigger,
                       state: repo.ReplyState, texts: list[str]) -> Service | None:
    """A tapped menu row (`service:<id>`), or a bare number answering a numbered menu (TikTok)."""
    if trigger.message_id is None:
        return None
    chosen = tools.chosen_service(clinic, state.latest_choice)
    if chosen is None and texts and texts[-1].strip().rstrip(".").isdigit():
        menu = await repo.last_menu(conn, trigger.conversation_id)
        chosen = tools.chosen_service(clinic, tools.numbered_choice(texts[-1], menu))
    return chosen


def _opt_out_word(plan: ReplyPlan, text: str) -> Reply | None:
    """The whole message is one of the tenant's opt-out (or opt-in) words: recorded now, one
    confirmation that says how to come back, never a question for the model."""
    clinic = plan.clinic
    if is_word(text, clinic.opt_out_words):
        back = word_for(clinic.opt_in_words, plan.lang, "ALTA", "START")
        return Reply(say("opted_out", plan.lang, word=back), "reply", "skipped", opt_out=True)
    if is_word(text, clinic.opt_in_words):
        stop = word_for(clinic.opt_out_words, plan.lang, "BAJA", "STOP")
        return Reply(say("opted_in", plan.lang, word=stop), "reply", "skipped", opt_out=False)
    return None


def word_for(words: tuple[str, ...], lang: Lang, spanish: str, english: str) -> str:
    """The word to tell the patient: the usual one of their language when the tenant has it."""
    usual = english if lang == "en" else spanish
    return usual if usual in words else (words[0] if words else usual)


def situation_text(clinic: TenantContext, now: datetime, closed_note: str | None,
               choice: Service | None = None) -> str:
    """The per-request part, after the cached block: now, open or closed, a menu choice."""
    lines = [local_now_text(clinic.business_hours, clinic.timezone, now)]
    if closed_note is None:
        lines.append("La clínica está dentro de su horario de atención ahora mismo.")
    else:
        lines.append(f"Ahora la clínica está fuera de su horario de atención; vuelve a atender "
                     f"{closed_note}. Díselo al paciente con amabilidad y ayúdale igualmente con "
                     f"lo que puedas responder con este contexto.")
    if choice is not None:
        lines.append(f"El paciente eligió «{choice.name}» en el menú de servicios.")
    return "\n".join(lines)


def _with_hours(text: str, closed_note: str | None, lang: Lang = "es") -> str:
    if closed_note is None:
        return text
    return f"{text} {say('closed', lang, when=closed_note)}"


def _escalation(plan: ReplyPlan, reason: str, source: str) -> Reply:
    return Reply(_with_hours(say("escalation", plan.lang), plan.closed_note, plan.lang),
                 "holding", "escalated", escalation=(reason, source))


def _fallback(plan: ReplyPlan) -> Reply:
    found = answer_from_catalog(plan.clinic, plan.texts, plan.lang)
    reply = Reply(_with_hours(found.text, plan.closed_note, plan.lang),
                  "reply" if found.answered else "holding",
                  "fallback", fallback=True, signals=detect_signals("\n".join(plan.texts)),
                  signal_source="rules", interests=[plan.choice] if plan.choice else [])
    if not found.answered:
        reply.escalation = ("the fallback found no answer in the FAQs", "ai")
    elif found.wants_booking:
        reply.escalation = ("appointment request while the assistant is unavailable", "ai")
    return reply


def _typing(trigger: Trigger, plan: ReplyPlan) -> ReplyStarted:
    c = plan.conversation
    return ReplyStarted(
        tenant_id=trigger.tenant_id, correlation_id=trigger.correlation_id,
        channel=Channel(c.channel), conversation_id=c.id,
        recipient_id=c.platform_user_id,
        platform_message_id=c.latest_platform_id,
    )


async def _ask_model(deps: Deps, trigger: Trigger, plan: ReplyPlan) -> Reply:
    assert deps.responder is not None
    nudge = REQUEST_NUDGE
    history = (await content.with_files(plan.history, plan.files, deps.store) if plan.files
               else plan.history)
    # Still thinking after a moment: the patient sees the message read and a reply being typed.
    typing = asyncio.get_running_loop().call_later(
        deps.settings.ai_typing_after_seconds, deps.notify, _typing(trigger, plan))
    try:
        result = await deps.responder.reply(plan.clinic, history, plan.situation, nudge)
    except ModelRejected as exc:
        raise PermanentError(str(exc)) from exc
    except BadModelOutput as exc:
        # Never forward what the model did not give as a reply: answer from the catalog instead.
        log.warning("ai.bad_output", error=str(exc)[:300])
        return _fallback(plan)
    finally:
        typing.cancel()
    try:
        decision = tools.decide(plan.clinic, result.calls)
        return reply_from_decision(plan, decision, result)
    except tools.InvalidToolCall as exc:
        log.warning("ai.invalid_tool_call", error=str(exc)[:300],
                    tools=[c.name for c in result.calls])
        metrics.AI_REPLIES.labels(str(plan.clinic.tenant_id), "invalid_tool_call").inc()
        return _fallback(plan)


def reply_from_decision(plan: ReplyPlan, d: tools.Decision, usage: ModelReply) -> Reply:
    """The message the tool calls make, with their side effects (appointments, interests)."""
    lang = plan.lang
    text = d.text
    quote = None
    if d.quote:
        quote = tools.quote(d.quote)
        body = tools.quote_text(plan.clinic, quote, plan.now.date(), lang)
        text = f"{text}\n\n{body}" if text else body
    if text is None and d.menu:
        text = say("menu", lang)
    if text is None and d.escalation is not None:
        text = say("escalation", lang)
    if text is None and d.bookings:
        text = say(d.bookings[0].action, lang)
    if text is None:
        raise tools.InvalidToolCall("no message for the patient")
    interests = list(d.interests)
    if plan.choice is not None and plan.choice not in interests:
        interests.append(plan.choice)
    signals = list(d.signals)
    if interests and Signal.INTERESTED not in signals:
        signals.append(Signal.INTERESTED)
    reply = Reply(text, "reply", "ai", signals=signals, bookings=d.bookings, usage=usage,
                  interests=interests, quote=quote)
    if d.menu:
        reply.sections = tools.menu_sections(plan.clinic, "Services" if lang == "en" else "Servicios")
        if len(reply.text) > tools.MENU_BODY_MAX:  # an interactive body holds 1024 characters
            reply.text = say("menu", lang)
    if quote is not None:
        name = (plan.conversation.lead_name or "").strip() or "paciente"
        reply.fallback_template = tools.quote_template(name, quote)
    if d.escalation is not None:
        reply.purpose, reply.outcome = "holding", "escalated"
        reply.escalation = (d.escalation, "ai")
    return reply


def _events(trigger: Trigger, plan: ReplyPlan, reply: Reply) -> list[Event]:
    c, reply_id = plan.conversation, trigger.reply_id
    tenant_id, correlation_id = trigger.tenant_id, trigger.correlation_id
    channel = Channel(c.channel)
    menu_button = "See services" if plan.lang == "en" else "Ver servicios"
    events: list[Event] = [OutboundMessage(
        event_id=stable_id("outbound", reply_id), channel=channel, message_id=reply_id,
        conversation_id=c.id, lead_id=c.lead_id, recipient_id=c.platform_user_id,
        sender_type="ai", purpose=reply.purpose, kind="list" if reply.sections else "text",
        text=reply.text, sections=reply.sections,
        list_button=menu_button if reply.sections else None,
        fallback_template=reply.fallback_template,
        tenant_id=tenant_id, correlation_id=correlation_id,
    )]
    if reply.escalation is not None:
        reason, source = reply.escalation
        events.append(ConversationEscalated(
            event_id=stable_id("escalated", reply_id), conversation_id=c.id,
            lead_id=c.lead_id, channel=channel, reason=reason, source=source,  # type: ignore[arg-type]
            tenant_id=tenant_id, correlation_id=correlation_id,
        ))
    signals = list(reply.signals)
    if reply.interests and Signal.INTERESTED not in signals:
        signals.append(Signal.INTERESTED)  # the scorer looks again, and finds the services
    if signals:
        events.append(LeadSignals(
            event_id=stable_id("signals", reply_id), lead_id=c.lead_id, conversation_id=c.id,
            message_id=trigger.message_id, signals=signals, source=reply.signal_source,
            tenant_id=tenant_id, correlation_id=correlation_id,
        ))
    for i, booking in enumerate(reply.bookings):
        events.append(AppointmentRequested(
            event_id=stable_id("appointment", reply_id, i), action=booking.action,
            lead_id=c.lead_id, conversation_id=c.id,
            service_id=booking.service.id if booking.service else None,
            service_name=booking.service.name if booking.service else None,
            branch_id=booking.branch.id if booking.branch else None,
            branch_name=booking.branch.name if booking.branch else None,
            preferred_dates=list(booking.preferred_dates), source="ai",
            tenant_id=tenant_id, correlation_id=correlation_id,
        ))
    return events


async def _store_reply(deps: Deps, trigger: Trigger, plan: ReplyPlan, reply: Reply,
                       attempt: uuid.UUID) -> list[Event]:
    async with tenant_session(deps.pool, trigger.tenant_id) as conn:
        return await _store(conn, trigger, plan, reply, attempt)


async def _store(conn: asyncpg.Connection, trigger: Trigger, plan: ReplyPlan, reply: Reply,
                 attempt: uuid.UUID) -> list[Event]:
    events = _events(trigger, plan, reply)
    usage = reply.usage
    async with conn.transaction():
        leased, inserted = await _store_rows(conn, trigger, plan, reply, events, attempt)
    if not leased:  # another attempt took the lease over (ours looked gone): it answers
        log.warning("reply.lease_lost", message_id=str(trigger.reply_id))
        return []
    if not inserted:  # this very reply was stored before: send what was stored
        stored = await repo.stored_reply_payload(conn, trigger.reply_id)
        assert stored is not None
        return await _stored_events(conn, trigger, stored)
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


async def _store_rows(conn: asyncpg.Connection, trigger: Trigger, plan: ReplyPlan, reply: Reply,
                      events: list[Event], attempt: uuid.UUID) -> tuple[bool, bool]:
    """The reply with what it records (quote, interests, opt-out), in the caller's transaction,
    only while `attempt` holds the lease. Returns (leased, stored), as `repo.store_reply`."""
    usage = reply.usage
    lead_id = plan.conversation.lead_id
    leased, inserted = await repo.store_reply(
        conn, message_id=trigger.reply_id, tenant_id=trigger.tenant_id,
        conversation_id=trigger.conversation_id, lead_id=plan.conversation.lead_id,
        channel=plan.conversation.channel, text=reply.text, purpose=reply.purpose,
        payload={"events": [e.model_dump(mode="json") for e in events],
                 "trigger_message_id": str(trigger.message_id) if trigger.message_id else None},
        fallback=reply.fallback, model=usage.model if usage else None,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        cache_read_tokens=usage.cache_read_tokens if usage else None,
        latency_ms=usage.latency_ms if usage else None,
        escalation_reason=reply.escalation[0] if reply.escalation else None,
        resolved=reply.escalation is None and bool(reply.bookings),
        attempt=attempt, answered_through=plan.conversation.latest_at,
        kind="list" if reply.sections else "text",
    )
    if not inserted:
        return leased, False
    await idempotency.keep(conn, REPLIES_CONSUMER, trigger.reply_id, events)
    if reply.quote is not None:
        q = reply.quote
        await repo.store_quote(
            conn, id=stable_id("quote", trigger.reply_id), tenant_id=trigger.tenant_id,
            lead_id=lead_id, conversation_id=trigger.conversation_id,
            message_id=trigger.reply_id, items=q.items(), total_min=q.total_min,
            total_max=q.total_max, currency=q.currency)
    if reply.interests:
        await repo.add_interests(conn, lead_id, [s.name for s in reply.interests])
    if reply.opt_out is not None:
        await repo.set_lead_opt_out(conn, lead_id, reply.opt_out, plan.now)
        log.info("lead.opt_out_changed", opted_out=reply.opt_out, source="word")
    return True, True


# -- what arrives: patient messages, staff reply requests, state changes ---------------------

@dataclass(frozen=True)
class Stored:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    new: bool
    events: list[Event]


async def take_inbound(deps: Deps, event: InboundMessage) -> list[Event]:
    """Store what arrived and say a reply is due (the broker holds it for the debounce)."""
    if event.sender_type == "agent":
        async with tenant_tx(deps.pool, event.tenant_id) as conn:
            if await repo.is_own_echo(conn, event):
                log.info("message.own_echo", platform_message_id=event.platform_message_id)
                return []
    # Every id the message names is locked before anything is read (the first await, so in
    # delivery order): a patient first seen by their WhatsApp user id and then with their phone
    # number is looked up only once the earlier message is stored.
    keys = [(event.tenant_id, event.channel.value, user)
            for user in (event.platform_user_id, *event.user_aliases)]
    async with deps.locks.local_all(keys):
        if event.user_aliases:  # one patient, several ids: the lead's own id is the one to use
            async with tenant_tx(deps.pool, event.tenant_id) as conn:
                known = await repo.canonical_user(conn, event)
            if known and known != event.platform_user_id:
                event = event.model_copy(update={
                    "platform_user_id": known,
                    "user_aliases": sorted({*event.user_aliases, event.platform_user_id} - {known})})
        async with tenant_session(deps.pool, event.tenant_id) as conn:
            stored = await store_inbound(conn, event)
    if event.sender_type == "agent":
        return stored.events  # staff answered in the platform's app: the AI steps back
    if event.kind in ANNOTATION_KINDS or event.standby:
        return stored.events  # changes what was said, or another app owns the thread
    if is_scheduler_choice(event.choice_id):
        return stored.events  # an offered slot or a reminder button: the scheduler answers
    # The debounce waits in the broker, not here: the rest of a burst arrives meanwhile, and
    # only the latest message's reply answers them all. A redelivery says it again (same id).
    return [*stored.events, ReplyDue(
        event_id=stable_id("reply-due", event.event_id), tenant_id=event.tenant_id,
        correlation_id=event.event_id, conversation_id=stored.conversation_id,
        message_id=stored.message_id, delay_ms=int(deps.settings.ai_debounce_seconds * 1000),
    )]


async def store_inbound(conn: asyncpg.Connection, event: InboundMessage) -> Stored:
    """Lead, conversation and message, once per platform message id (a redelivery finds them).

    Under the patient's in-process lock: in delivery order.
    """
    row = await repo.store_inbound(conn, event)
    if row.new:
        if event.user_aliases or event.referral or event.new_user_id:
            await repo.annotate_lead(conn, row.lead_id, event)
        if event.target_id and event.kind in ANNOTATION_KINDS:
            applied = await repo.apply_to_target(conn, row.conversation_id, event)
            log.info("message.annotation", kind=event.kind, target=event.target_id,
                     applied=applied)
    if row.message_id is None:  # its event id is stored, under another platform message id
        raise PermanentError(f"event {event.event_id} already stored for another message")
    if not row.new:
        log.info("message.duplicate", platform_message_id=event.platform_message_id)
    events: list[Event] = []
    if row.first:
        events.append(LeadCreated(
            event_id=stable_id("lead.created", row.lead_id), tenant_id=event.tenant_id,
            correlation_id=event.event_id, lead_id=row.lead_id, channel=event.channel,
            name=event.display_name,
        ))
    log.info("message.stored", message_id=str(row.message_id),
             conversation_id=str(row.conversation_id), lead_id=str(row.lead_id),
             channel=event.channel.value, new=row.new)
    return Stored(row.message_id, row.conversation_id, row.new, events)


async def reply_requested(deps: Deps, event: ReplyRequested) -> list[Event]:
    """Staff ask for a reply now: due at once, answered like a patient's message."""
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        found = await repo.conversation_exists(conn, event.conversation_id)
    if not found:
        raise PermanentError(f"conversation {event.conversation_id} not found")
    return [ReplyDue(
        event_id=stable_id("reply-due", event.event_id), tenant_id=event.tenant_id,
        correlation_id=event.correlation_id or event.event_id,
        conversation_id=event.conversation_id, request_id=event.event_id,
    )]


async def apply_state_change(
    deps: Deps, event: OptOutChanged | ConversationEscalated | ConversationReleased
) -> list[Event]:
    """State changes that are not patient messages: marketing opt-outs, and escalations or
    hand-backs decided by staff (operator API) or the legacy callback. The ai-responder owns
    leads and conversations, so it applies them; each is idempotent (setting a state twice is
    one state)."""
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        if isinstance(event, OptOutChanged):
            found = await repo.set_opted_out(conn, event.channel.value, event.platform_user_id,
                                             event.opted_out, event.changed_at)
            log.info("lead.opt_out_changed", opted_out=event.opted_out, known_lead=found)
        elif isinstance(event, ConversationEscalated):
            # Our own escalations arrive here too: the conversation is already escalated.
            await repo.escalate_conversation(conn, event.conversation_id, event.reason)
        else:
            await repo.release_conversation(conn, event.conversation_id)
            log.info("conversation.released", conversation_id=str(event.conversation_id))
    return []
