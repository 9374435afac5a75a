"""One reply at a time per conversation, across tasks and across replicas.

In process, an asyncio lock per conversation keeps a burst from occupying several pool
connections; across replicas, a session-level Postgres advisory lock on the connection that then
does all of the reply's database work (so a handler never needs a second connection while it
holds the lock, and a lost connection releases the lock by itself).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from tistis_common.ids import stable_id


def advisory_key(conversation_id: uuid.UUID) -> int:
    """A signed 64-bit key of our own namespace, so other services' locks never collide."""
    return int.from_bytes(stable_id("ai-responder.reply", conversation_id).bytes[:8], "big",
                          signed=True)


class ConversationLocks:
    def __init__(self) -> None:
        self._locks: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, pool: asyncpg.Pool, conversation_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock, pool.acquire() as conn:
                key = advisory_key(conversation_id)
                await conn.execute("SELECT pg_advisory_lock($1)", key)
                try:
                    yield conn
                finally:
                    if not conn.is_closed():
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]  # the registry stays as small as the work in hand
            else:
                self._locks[conversation_id] = (lock, users - 1)
