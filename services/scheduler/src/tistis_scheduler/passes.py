"""The scheduler's own clock: each pass visits every tenant in its own scope and sends due
reminders, follow-ups (less often) and whatever a crash left unpublished in the outbox.

A pass commits its decisions with their events in the outbox, publishes after the commit, then
marks them published; a crash in between leaves them for a later pass (after a grace period, so
that a pass in flight on another replica is not raced), and downstream drops duplicates by id."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from tistis_common import idempotency
from tistis_common.db import tenant_ids, tenant_tx
from tistis_common.events import Event
from tistis_common.logging import bound, get_logger
from tistis_common.retention import expire_media

from .deps import Deps
from .followups import follow_up
from .reminders import remind

log = get_logger(__name__)

PASSES = "scheduler"  # the outbox consumer of the passes' own events (no consumed event)

Step = Callable[[asyncpg.Connection, uuid.UUID, Deps], Awaitable[list[Event]]]


@dataclass
class PassResult:
    reminders: int = 0
    followups: int = 0  # follow-up messages and COLD marks
    republished: int = 0
    media_deleted: int = 0  # patient files past their tenant's retention (with follow-ups)
    errors: list[str] = field(default_factory=list)


async def _publish(deps: Deps, tenant_id: uuid.UUID, events: list[Event]) -> None:
    if not events:
        return
    assert deps.publisher is not None
    await deps.publisher.publish_all(events)
    async with tenant_tx(deps.pool, tenant_id) as conn:
        await idempotency.mark_published(conn, events, deps.now())


async def decide(deps: Deps, tenant_id: uuid.UUID, step: Step) -> list[Event]:
    """One step's decisions committed with their events kept unpublished (not yet published)."""
    async with tenant_tx(deps.pool, tenant_id) as conn:
        events = await step(conn, tenant_id, deps)
        await idempotency.keep(conn, PASSES, None, events, now=deps.now(), published=False)
    return events


async def _step(deps: Deps, tenant_id: uuid.UUID, step: Step) -> int:
    events = await decide(deps, tenant_id, step)
    await _publish(deps, tenant_id, events)
    return len(events)


async def republish(deps: Deps, tenant_id: uuid.UUID) -> int:
    grace = timedelta(seconds=deps.settings.scheduler_outbox_grace_seconds)
    async with tenant_tx(deps.pool, tenant_id) as conn:
        events = await idempotency.unpublished(conn, PASSES, deps.now() - grace)
        if events:
            assert deps.publisher is not None
            await deps.publisher.publish_all(events)  # under the row locks: one replica at a time
            await idempotency.mark_published(conn, events, deps.now())
            log.warning("outbox.republished", count=len(events))
    return len(events)


async def run_pass(deps: Deps, *, followups: bool = True) -> PassResult:
    """One pass over every tenant; a failing tenant does not stop the others."""
    result = PassResult()
    for tenant_id in await tenant_ids(deps.pool):
        with bound(tenant_id=str(tenant_id)):
            try:
                result.republished += await republish(deps, tenant_id)
                result.reminders += await _step(deps, tenant_id, remind)
                if followups:
                    result.followups += await _step(deps, tenant_id, follow_up)
                    if deps.store is not None:
                        result.media_deleted += await expire_media(
                            deps.pool, deps.store, tenant_id, deps.now(),
                            deps.settings.media_retention_days)
            except Exception as exc:
                log.exception("pass.tenant_failed")
                result.errors.append(f"{tenant_id}: {type(exc).__name__}: {exc}")
    return result


def clock_loop(deps: Deps) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A background task for Runtime.background: a pass every tick, follow-ups every interval."""
    s = deps.settings

    async def loop(stopping: asyncio.Event) -> None:
        last_followups = float("-inf")
        while not stopping.is_set():
            due = time.monotonic() - last_followups >= s.scheduler_followup_interval_seconds
            try:
                result = await run_pass(deps, followups=due)
            except Exception as exc:  # the tenant directory unreachable: try again next tick
                log.exception("pass.failed")
                result = PassResult(errors=[f"{type(exc).__name__}: {exc}"])
            if due and not result.errors:
                last_followups = time.monotonic()
            if result.reminders or result.followups or result.republished or result.errors:
                log.info("pass.done", reminders=result.reminders, followups=result.followups,
                         republished=result.republished, errors=len(result.errors))
            try:
                await asyncio.wait_for(stopping.wait(), timeout=s.scheduler_tick_seconds)
            except TimeoutError:
                pass

    return loop
