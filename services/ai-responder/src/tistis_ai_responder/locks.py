"""One thing at a time per conversation, across tasks and across replicas.

The key is the patient on a channel (tenant, channel, platform user id), which names exactly one
conversation and is known before the conversation row exists. Storing a message and producing a
reply both hold it, so a message that arrives while the model is thinking is stored after that
reply: the stored order is the order the patient saw.

In process, a FIFO asyncio lock per key keeps a burst in delivery order and from occupying several
pool connections; across replicas, a session-level Postgres advisory lock on the connection that
then does all of the work under it (a handler never needs a second connection while it holds the
lock, and a lost connection releases the lock by itself).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

import asyncpg
from tistis_common.ids import stable_id

LockKey = tuple[uuid.UUID, str, str]  # tenant, channel, platform user id


def advisory_key(key: LockKey) -> int:
    """A signed 64-bit key of our own namespace, so other services' locks never collide."""
    return int.from_bytes(stable_id("ai-responder.conversation", *key).bytes[:8], "big",
                          signed=True)


class ConversationLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def local(self, key: Hashable) -> AsyncIterator[None]:
        """In-process only. asyncio locks are FIFO, so handlers that ask in delivery order (before
        any other await) get it in delivery order: a burst is stored in the order it came."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]  # the registry stays as small as the work in hand
            else:
                self._locks[key] = (lock, users - 1)

    @asynccontextmanager
    async def hold(self, pool: asyncpg.Pool, key: LockKey) -> AsyncIterator[asyncpg.Connection]:
        """Across replicas too: the advisory lock lives on the connection that does the work.

        The connection comes scoped to the key's tenant (session level, like
        `db.tenant_session`), lock and scope in one round trip. Both end when it goes back to
        the pool, whose reset runs `pg_advisory_unlock_all()` and `RESET ALL`, before the
        in-process lock lets the next handler in.
        """
        async with self.local(key), pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1), set_config('app.tenant_id', $2, false)",
                               advisory_key(key), str(key[0]))
            yield conn
