"""Who is composing a conversation's reply: a lease on the conversation row (migration 0800),
taken in one short statement and given back in the one that stores the reply, so that no
connection or transaction is held while the model thinks.

A lease names an attempt (a random id per try) and this process's key. Each process holds a
session advisory lock on its key for its lifetime, on one connection of its own pool (the
service stays within `DB_POOL_MAX`). A lease is free when nobody holds it, when its process is
gone (PostgreSQL dropped the lock with the session: kill -9, OOM, a lost connection), or when it
is this process's own and none of this process's live attempts has it (an attempt that could
not give it back). Nothing expires by time: a model call bounded by its own timeout holds the
lease exactly as long as it runs, and a crash frees it at once.

Cancellation (the broker closed the channel, and aiormq cancels the handlers of its deliveries):
an attempt cancelled before its reply is decided gives the lease back (`Attempts.give_back`,
from the claim statement on: a claim whose answer was lost may have been taken), and its
redelivery asks again; once the model has answered (or n8n is called), the attempt records
what came back to its end (`to_the_end`), so that the redelivery re-emits the stored reply
instead of asking twice. No lease is left to a live process without a live attempt.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from contextlib import suppress
from typing import TYPE_CHECKING, TypeVar

from tistis_common import metrics
from tistis_common.db import tenant_session
from tistis_common.lease import ProcessLease
from tistis_common.logging import get_logger

from . import repository as repo

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)

LOCK_CLASS = 7_420_800  # first key of the two-key advisory locks: "ai-responder leases"

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """`work`, run to its end even when the caller is cancelled meanwhile; the cancellation goes
    on once it ended (the delivery stays unacked, and its redelivery finds what was recorded)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("lease.finished_after_cancel", error=repr(error)[:300])
        raise


def process_lease(pool: asyncpg.Pool) -> ProcessLease:
    """On one connection of the service's own pool, so that it stays within `DB_POOL_MAX`."""
    return ProcessLease(LOCK_CLASS, pool=pool)


class Attempts:
    """This process's live attempts, one per conversation at most, and the leases it could not
    give back yet (given back by `keep`, retried until the database answers)."""

    def __init__(self, pool: asyncpg.Pool, lease: ProcessLease):
        self.pool = pool
        self.lease = lease
        self.live: dict[uuid.UUID, uuid.UUID] = {}
        self._unreleased: dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID]] = {}

    def begin(self, conversation_id: uuid.UUID) -> uuid.UUID | None:
        """A new attempt for the conversation, or None when this process is already on it."""
        if conversation_id in self.live:
            return None
        attempt = self.live[conversation_id] = uuid.uuid4()
        metrics.AI_REPLIES_IN_FLIGHT.inc()
        return attempt

    def end(self, conversation_id: uuid.UUID, attempt: uuid.UUID) -> None:
        if self.live.get(conversation_id) == attempt:
            del self.live[conversation_id]
            metrics.AI_REPLIES_IN_FLIGHT.dec()

    async def give_back(self, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                        attempt: uuid.UUID) -> None:
        """Release on a fresh connection; when that fails, `keep` tries again later."""
        try:
            async with tenant_session(self.pool, tenant_id) as conn:
                await repo.release_reply(conn, conversation_id, attempt)
        except Exception as exc:
            log.warning("lease.release_failed", conversation_id=str(conversation_id),
                        error=repr(exc)[:300])
            self._unreleased[attempt] = (tenant_id, conversation_id)
        except asyncio.CancelledError:
            self._unreleased[attempt] = (tenant_id, conversation_id)
            raise

    async def keep(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=2.0)
            for attempt, (tenant_id, conversation_id) in list(self._unreleased.items()):
                del self._unreleased[attempt]
                await self.give_back(tenant_id, conversation_id, attempt)
