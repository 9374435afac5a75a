"""The dispatcher's decisions: send an outbound message exactly once, within the platform's
rules; apply the platform's delivery statuses.

Send, step by step (a happy-path text is two statements, six round trips with the scopes):
1. One statement: the message row claimed pending -> sending (`claimed_by`: this process's
   lease) together with the send's context; the row is created from the event first if nobody
   stored it. A final status means a redelivery: nothing is sent. Then the rules (opt-out,
   window, length, TikTok quota): a refusal ends the claim with its final status; a rule that
   cannot decide (no connection) gives the claim back.
2. Outside any transaction and without a database connection: the platform call(s), at most
   `dispatcher_tenant_concurrency` at once per tenant. Rate limits are retried in place up to a
   bound, honouring Retry-After. A token about to expire is refreshed first, and one the
   platform calls expired is refreshed once and the part sent again (tistis_dispatcher.tokens).
3. One statement per outcome: `sent` with the platform id; or back to `pending` for a retry
   (5xx, timeouts, longer rate limits) or a replay (token invalid: parked in the DLQ); or a
   final `failed` / `blocked_window` with the conversation flagged for a human.
Each attempt (1 to 3) runs in a task of its own, registered in `Deps.attempts`
(tistis_dispatcher.attempts): a broker channel closed meanwhile cancels only the handler's wait,
never a send half-way, and a redelivery waits for the live attempt instead of taking its claim
for another's. An attempt that stops before its platform call gives the claim back; one that
has made the call records its outcome, retried through a database restart.
A crash between 1 and 3 leaves the row in `sending`: see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from tistis_common import metrics
from tistis_common.broker import PermanentError, WaitForClaim
from tistis_common.db import DATABASE_AWAY, tenant_session, tenant_tx
from tistis_common.events import MessageStatus, OutboundMessage
from tistis_common.logging import bound, get_logger
from tistis_common.tenant_labels import TENANT_LABELS
from tistis_common.vocabulary import STATUS_RANK

from tistis_dispatcher import messenger, platform_rules, tiktok, tokens, uploads, whatsapp
from tistis_dispatcher import repository as repo
from tistis_dispatcher.attempts import Attempt
from tistis_dispatcher.platform import (
    Account,
    OptedOut,
    RateLimited,
    Rejected,
    SendError,
    TokenInvalid,
    Transient,
    WindowClosed,
)
from tistis_dispatcher.text import TooLong
from tistis_dispatcher.whatsapp import Unsendable

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.secrets import SecretBox
    from tistis_common.settings import Settings

    from tistis_dispatcher.deps import Deps

log = get_logger(__name__)


class RetryLater(Exception):
    """Not now: the runner retries with its delays (a plain exception on purpose)."""


@dataclass(frozen=True)
class Refusal:
    """A final answer without a platform call."""

    status: str  # failed | blocked_window | skipped
    reason: str
    outcome: str  # the SENDS label
    flag: bool = True


@dataclass(frozen=True)
class SendPlan:
    account: Account
    bodies: list[dict[str, Any]]
    done: list[str]  # platform ids of parts sent by an earlier attempt
    # One of our files: the bodies again, with the platform's id once it is uploaded (uploads.py)
    with_upload: Callable[[str], list[dict[str, Any]]] | None = None


def _count(event: OutboundMessage, outcome: str) -> None:
    metrics.SENDS.labels(TENANT_LABELS.of(event.tenant_id), event.channel.value, outcome).inc()


# ------------------------------------------------------------------------ outbound


async def send(event: OutboundMessage, deps: Deps, attempt: Attempt) -> None:
    """One attempt at sending `event` (run by `deps.attempts`, one at a time per message)."""
    try:
        plan = await _prepare(event, deps, attempt)
        if plan is not None:
            await _send(event, plan, deps, attempt)
    except BaseException:
        if attempt.claimed and not attempt.called:
            await _release(event, deps, attempt)
        raise


async def _release(event: OutboundMessage, deps: Deps, attempt: Attempt) -> None:
    """Nothing was sent (the rules could not decide, an error, cancelled at shutdown): the claim
    goes back, so that a retry or a replay (e.g. once the clinic connects the channel) finds the
    message pending, not a send in flight. If the database is away, the attempt stays known as
    one that made no call, and the next attempt here takes its claim over."""
    try:
        async with tenant_session(deps.pool, event.tenant_id) as conn:
            await repo.release(conn, event.message_id, deps.claimer)
        attempt.claimed = False
    except DATABASE_AWAY as exc:
        log.warning("send.unclaim_failed", error=type(exc).__name__)


async def _claim(conn: asyncpg.Connection, event: OutboundMessage, deps: Deps) -> repo.Claim:
    row = await repo.claim_outbound(conn, event, deps.claimer)
    if row is None:  # nobody stored it first (scheduler, API): from the event
        await repo.insert_outbound(conn, event)
        row = await repo.claim_outbound(conn, event, deps.claimer)
    if row is None or row.direction != "outbound":
        raise PermanentError(f"message {event.message_id} is not an outbound message")
    return row


async def _prepare(event: OutboundMessage, deps: Deps, attempt: Attempt) -> SendPlan | None:
    # Each statement commits on its own: the claim and every write after it are conditional on
    # the status they expect, so no transaction (nor its BEGIN and COMMIT) is needed.
    async with tenant_session(deps.pool, event.tenant_id) as conn:
        earlier = attempt.previous  # an attempt of ours that ended holding the claim
        # Stopped before the claim's answer is read, this attempt may hold it: it gives it back
        # (`release` is conditional), unless the claim is that earlier attempt's.
        attempt.claimed = earlier is None or not earlier.claimed
        row = await _claim(conn, event, deps)
        attempt.claimed = False
        ours = row.status == "sending" and row.claimed_by == deps.claimer
        if ours and earlier is not None and earlier.unwritten is not None:
            async with conn.transaction():
                await earlier.unwritten(conn)  # its platform call's outcome, recorded now
            earlier.unwritten, earlier.claimed = None, False
            log.info("send.outcome_recorded_late")
            row = await _claim(conn, event, deps)
            ours = False
        if row.claimed or (ours and earlier is not None and not earlier.called):
            # Ours now; or an attempt of ours stopped before any platform call and could not
            # give its claim back: this one takes it over.
            attempt.claimed = True
            if earlier is not None:
                earlier.claimed = False
            return await _decide_claimed(conn, event, row, deps, attempt)
        status = row.status
        if status in repo.FINAL:
            _count(event, "duplicate")
            log.info("send.duplicate", status=status)
            return None
        timeout = deps.settings.dispatcher_sending_timeout_seconds
        if status == "pending":  # read as pending, but another process's claim won the update
            raise WaitForClaim("the message was claimed meanwhile", timeout)
        if status != "sending":
            raise PermanentError(f"message {event.message_id} has status {status}")
        # Claimed before, and no attempt of this process is on it (Attempts.run waited for any).
        # The one crash window: the claimer died between its platform call and recording the
        # outcome (its lease is gone; or it is this process, whose attempt ended mid-call), or
        # never came back (the claim outlived the timeout). Whether the patient got it is
        # unknown, and sending again could reach them twice: a human checks instead.
        claimer_died = ours or (row.claimed_by is not None and await repo.claimer_gone(
            conn, row.claimed_by))
        remaining = timeout - row.age.total_seconds()
        if not claimer_died and remaining > 0:
            raise WaitForClaim("another dispatcher is sending this message now", remaining)
        if earlier is not None:
            earlier.claimed = False  # settled here, one way or the other
        if not await repo.finish_unsent(conn, event.message_id, row.claimed_by, "failed",
                                    "send_outcome_unknown", flag=True):
            raise RetryLater("the stale claim was settled meanwhile")  # a duplicate next time
        _count(event, "unknown")
        log.error("send.outcome_unknown", claimed_by=row.claimed_by,
                  claimed_for_s=row.age.total_seconds())
    if claimer_died:  # parked with its error, counted, once the mark above is committed
        raise PermanentError("send outcome unknown: the dispatcher that claimed this message "
                             "died mid-send; not sent again, conversation flagged")
    return None


async def _decide_claimed(conn: asyncpg.Connection, event: OutboundMessage,
                          row: repo.Claim, deps: Deps, attempt: Attempt) -> SendPlan | None:
    """The rules (opt-out, window, length, quota) for a message this process has just claimed:
    a plan to send, or a refusal that ends the claim with its final status. An error gives
    the claim back (`_attempt`)."""
    if row.conversation_id is None:
        raise PermanentError(f"conversation {event.conversation_id} not found")
    decision = await _decide(conn, event, row, deps.settings, deps.secrets)
    if isinstance(decision, SendPlan):
        return decision
    ended = await repo.finish_unsent(conn, event.message_id, deps.claimer, decision.status,
                                 decision.reason, decision.flag)
    attempt.claimed = False
    if not ended:
        raise RetryLater("the claim was settled meanwhile")  # a duplicate next time
    if decision.status == "blocked_window":
        metrics.WINDOW_BLOCKS.labels(event.channel.value).inc()
    _count(event, decision.outcome)
    log.info("send.refused", status=decision.status, reason=decision.reason)
    return None


async def _decide(conn: asyncpg.Connection, event: OutboundMessage, claim: repo.Claim,
                  settings: Settings, secrets: SecretBox) -> SendPlan | Refusal:
    """`claim`: the claimed row with the send's context (`repo.claim_outbound`)."""
    now = datetime.now(UTC)
    if platform_rules.needs_consent(event):
        if claim.opted_out_at is not None:
            return Refusal("skipped", "opted_out", "opted_out", flag=False)
        for text in await repo.recent_inbound_texts(conn, event.lead_id):  # newest first
            if platform_rules.is_opt_out(text, settings.opt_in_words):
                break  # the latest word decides: ALTA after BAJA is back in
            if platform_rules.is_opt_out(text, settings.opt_out_words):
                await repo.set_opted_out(conn, event.lead_id)
                return Refusal("skipped", "opted_out", "opted_out", flag=False)
    if claim.connection_id is None or not claim.enabled:
        # Parked for replay once the clinic connects (or re-enables) the channel.
        raise PermanentError(f"no enabled {event.channel} connection")
    assert claim.account_id is not None  # NOT NULL in every connection found
    conn_settings: dict[str, Any] = claim.connection_settings or {}
    window_hours = float(conn_settings.get("window_hours", settings.tiktok_window_hours))
    allowed = platform_rules.window(event, claim.last_inbound_at, now, window_hours)
    if isinstance(allowed, platform_rules.Blocked):
        return Refusal("blocked_window", allowed.reason, "blocked_window")
    account = Account(
        connection_id=claim.connection_id, channel=event.channel.value,
        platform_account_id=claim.account_id,
        access_token=secrets.open(claim.access_token) or (
            settings.whatsapp_access_token if event.channel == "whatsapp" else None),
        settings=conn_settings, token_expires_at=claim.token_expires_at,
        refresh_failed=claim.token_refresh_error is not None,
    )
    upload = uploads.needs_upload(allowed.event)
    if upload and event.channel == "tiktok":
        return Refusal("failed", "unsupported: TikTok sends text only", "failed")

    def render(media_id: str | None = None) -> list[dict[str, Any]]:
        effective = allowed if media_id is None else replace(
            allowed, event=uploads.with_media_id(allowed.event, media_id))
        return _render(effective, event, claim, account, settings.dispatcher_max_parts)

    try:
        bodies = render(uploads.PLACEHOLDER if upload else None)
    except TooLong as exc:
        return Refusal("failed", f"too_long: {exc}", "too_long")
    except Unsendable as exc:
        return Refusal("failed", f"{exc.reason}: {exc.detail}",
                       "too_long" if exc.reason == "too_long" else "failed")
    if event.channel == "tiktok":
        assert claim.timezone is not None  # NOT NULL in the tenant of the conversation found
        day = now.astimezone(ZoneInfo(claim.timezone)).date()
        if not await repo.take_quota(
            conn, tenant_id=event.tenant_id, lead_id=event.lead_id, message_id=event.message_id,
            parts=len(bodies), day=day, last_inbound_at=claim.last_inbound_at,
            unanswered_limit=settings.tiktok_unanswered_limit,
        ):
            return Refusal("blocked_window", "tiktok_message_limit", "blocked_limit")
    done = list((claim.payload or {}).get("part_ids") or [])
    return SendPlan(account, bodies, done, with_upload=render if upload else None)


def _render(allowed: platform_rules.Allowed, event: OutboundMessage, claim: repo.Claim,
            account: Account, max_parts: int) -> list[dict[str, Any]]:
    effective = allowed.event
    if event.channel == "whatsapp":
        return whatsapp.render(effective, event.recipient_id, max_parts)
    if event.channel == "tiktok":
        if not claim.platform_conversation_id:
            raise Unsendable("unsupported", "no TikTok conversation id for this conversation")
        return tiktok.render(effective, account.platform_account_id,
                             claim.platform_conversation_id, max_parts)
    return messenger.render(effective, event.recipient_id, allowed.messaging_type, allowed.tag,
                            max_parts)


async def _send(event: OutboundMessage, plan: SendPlan, deps: Deps, attempt: Attempt) -> None:
    done = list(plan.done)
    # A token about to expire is refreshed first; one the platform calls expired, once.
    account, refreshed = await tokens.before_send(event.tenant_id, plan.account, deps)
    if plan.with_upload is not None and not done:
        try:
            media_id = await uploads.platform_media_id(event, account, deps.platform,
                                                       deps.store, deps.pool)
        except SendError as exc:
            await _failed(event, plan, exc, done, deps, attempt)
            return
        plan = replace(plan, bodies=plan.with_upload(media_id))
    for index, body in enumerate(plan.bodies):
        if index < len(done):
            continue  # sent by an earlier attempt
        try:
            try:
                done.append(await _call(event, account, body, deps, attempt))
            except TokenInvalid:
                if refreshed or not tokens.refreshable(account):
                    raise
                refreshed = True
                account = await tokens.after_refusal(event.tenant_id, account, deps)
                done.append(await _call(event, account, body, deps, attempt))
        except SendError as exc:
            await _failed(event, plan, exc, done, deps, attempt)
            return
        if index < len(plan.bodies) - 1:
            async with tenant_session(deps.pool, event.tenant_id) as conn:
                await repo.record_parts(conn, event.message_id, done)

    async def sent(conn: asyncpg.Connection) -> None:
        await repo.finish_sent(conn, event.message_id, event.conversation_id, done[-1],
                             done if len(done) > 1 else None, plan.account.connection_id)

    await _record(event, deps, attempt, sent, atomic=False)
    metrics.CONNECTION_HEALTHY.labels(TENANT_LABELS.of(event.tenant_id), event.channel.value).set(1)
    _count(event, "sent")
    log.info("send.sent", platform_message_id=done[-1], parts=len(done))


def _backoff(attempt: int, recipient_only: bool) -> float:
    # 131056 (one recipient): Meta suggests 4^n seconds; other limits: 0.5 s doubling.
    return float(4**attempt) if recipient_only else 0.5 * 2**attempt


async def _call(event: OutboundMessage, account: Account, body: dict[str, Any],
                deps: Deps, send_attempt: Attempt) -> str:
    s = deps.settings
    attempt = 0
    while True:
        try:
            async with deps.limiter.slot(event.tenant_id):
                send_attempt.called = True  # from here on, the patient may get it
                return await deps.platform.send(account, body)
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else _backoff(
                attempt, exc.recipient_only)
            if attempt >= s.dispatcher_inline_retries or wait > s.dispatcher_max_inline_wait_seconds:
                raise
            metrics.SEND_RETRIES.labels(event.channel.value, "rate_limited").inc()
            log.warning("send.rate_limited", code=exc.code, wait_s=wait, attempt=attempt + 1,
                        recipient_only=exc.recipient_only)
            # Only this message waits (the tenant's slot is free meanwhile).
            await asyncio.sleep(wait)
            attempt += 1


# A PostgreSQL restart takes seconds: an outcome known after a platform call is worth the wait.
RECORD_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


async def _record(event: OutboundMessage, deps: Deps, attempt: Attempt,
                  write: Callable[[asyncpg.Connection], Awaitable[None]], *,
                  atomic: bool = True) -> None:
    """The outcome of a platform call (in one transaction when `atomic`; `finish_sent` is one
    statement): retried while the database is away (a lost connection, a restart), then left
    in `attempt` for the next attempt at the message to write (the claim stays ours meanwhile,
    so nobody sends it again)."""
    attempt.unwritten = write
    for wait in (*RECORD_RETRY_DELAYS, None):
        try:
            async with (tenant_tx if atomic else tenant_session)(deps.pool,
                                                                 event.tenant_id) as conn:
                await write(conn)
            break
        except DATABASE_AWAY as exc:
            if wait is None:
                raise
            log.warning("send.record_retry", wait_s=wait, error=type(exc).__name__)
            await asyncio.sleep(wait)
    attempt.unwritten = None
    attempt.claimed = False


async def _failed(event: OutboundMessage, plan: SendPlan, exc: SendError, done: list[str],
                  deps: Deps, attempt: Attempt) -> None:
    channel = event.channel.value
    log_fields = {"code": exc.code, "http_status": exc.status, "error": exc.title}
    await _record(event, deps, attempt, lambda conn: _write_failure(conn, event, plan, exc, done))
    if isinstance(exc, TokenInvalid):
        metrics.CONNECTION_HEALTHY.labels(TENANT_LABELS.of(event.tenant_id), channel).set(0)
        _count(event, "parked")
        log.error("connection.unhealthy", **log_fields)
        raise PermanentError(f"{channel} token invalid ({exc.code}): fix it, then replay") from exc
    if isinstance(exc, RateLimited | Transient):
        metrics.SEND_RETRIES.labels(channel, "rate_limited" if isinstance(exc, RateLimited)
                                    else "transient").inc()
        _count(event, "rate_limited" if isinstance(exc, RateLimited) else "retry")
        log.warning("send.retry_later", **log_fields)
        raise RetryLater(str(exc)) from exc
    if isinstance(exc, WindowClosed):
        metrics.WINDOW_BLOCKS.labels(channel).inc()
        _count(event, "blocked_window")
    else:
        _count(event, "opted_out" if isinstance(exc, OptedOut) else "failed")
    log.warning("send.failed", **log_fields)


async def _write_failure(conn: asyncpg.Connection, event: OutboundMessage, plan: SendPlan,
                         exc: SendError, done: list[str]) -> None:
    if done:
        await repo.record_parts(conn, event.message_id, done)
    if isinstance(exc, TokenInvalid):
        await repo.release_for_retry(conn, event.message_id, exc.code, exc.title)
        await repo.mark_unhealthy(conn, plan.account.connection_id, f"{exc.code}: {exc.title}")
    elif isinstance(exc, RateLimited | Transient):
        await repo.release_for_retry(conn, event.message_id, exc.code, exc.title)
    elif isinstance(exc, OptedOut):
        await repo.finish_failed(conn, event.message_id, "failed", exc.code, exc.title)
        await repo.set_opted_out(conn, event.lead_id)
    elif isinstance(exc, WindowClosed):
        await repo.finish_failed(conn, event.message_id, "blocked_window", exc.code, exc.title)
        await repo.flag_conversation(conn, event.conversation_id, f"window: {exc.title}")
    else:
        assert isinstance(exc, Rejected)
        await repo.finish_failed(conn, event.message_id, "failed", exc.code, exc.title)
        await repo.flag_conversation(conn, event.conversation_id, f"send failed: {exc.title}")


# ------------------------------------------------------------------------- statuses

async def apply_status(event: MessageStatus, deps: Deps) -> None:
    """delivered / read / failed from the platform; a status never moves backwards and
    `failed` is final. A failure flags the conversation (or opts the lead out on 131050)."""
    channel = event.channel.value
    if event.scope == "conversation":
        if event.platform_user_id and event.status in ("delivered", "read"):
            async with tenant_tx(deps.pool, event.tenant_id) as conn:
                await repo.mark_read_up_to(conn, channel, event.platform_user_id, event.status,
                                           event.status_at)
        return
    with bound(platform_message_id=event.platform_message_id, channel=channel,
               status=event.status):
        if event.status != "failed":
            # sent / delivered / read of a message found by its id: one statement (a platform
            # reports two or three of these per message we send).
            below = [s for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[event.status]]
            async with tenant_session(deps.pool, event.tenant_id) as conn:
                found = await repo.advance_status(conn, channel, event.platform_message_id,
                                                  event.status, below)
            if found.moved:
                log.info("status.updated")
            if found.known:
                return
            # Not found by its own id: an earlier part of a split text, or not committed yet.
        async with tenant_tx(deps.pool, event.tenant_id) as conn:
            row = await repo.find_by_platform_id(conn, channel, event.platform_message_id)
            if row is None:
                if await repo.any_in_flight(conn, channel,
                                            deps.settings.dispatcher_sending_timeout_seconds):
                    # The webhook may beat our own commit of the platform id: look again later.
                    raise RetryLater("status for a message not stored yet")
                log.info("status.unknown_message")  # e.g. sent from the clinic's own app
                return
            current = row.status
            if event.status == "failed":
                if current not in ("pending", "sending", "sent", "delivered"):
                    return
                await repo.set_status(conn, row.id, "failed", event.error_code,
                                      event.error_title)
                if event.error_code == 131050:
                    await repo.set_opted_out(conn, row.lead_id)
                else:
                    await repo.flag_conversation(
                        conn, row.conversation_id,
                        f"delivery failed: {event.error_code} {event.error_title or ''}".strip())
                if event.error_code == 131047:
                    metrics.WINDOW_BLOCKS.labels(channel).inc()
                metrics.SENDS.labels(TENANT_LABELS.of(event.tenant_id), channel, "failed").inc()
                log.warning("status.failed", code=event.error_code, title=event.error_title)
            elif current in STATUS_RANK and STATUS_RANK[event.status] > STATUS_RANK[current]:
                await repo.set_status(conn, row.id, event.status, None, None)
                log.info("status.updated", previous=current)
