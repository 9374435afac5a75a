"""A patient's messages are stored one at a time, in delivery order, within a process.

The key is the patient on a channel (tenant, channel, platform user id), which names exactly one
conversation and is known before the conversation row exists. asyncio locks are FIFO, so
handlers that ask in delivery order (before any other await) store in delivery order. The lock
covers one short statement; replies are not under it (see `lease`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Hashable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

LockKey = tuple[uuid.UUID, str, str]  # tenant, channel, platform user id


class ConversationLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def local(self, key: Hashable) -> AsyncIterator[None]:
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
    async def local_all(self, keys: Iterable[LockKey]) -> AsyncIterator[None]:
        """Each of a patient's ids (a WhatsApp user id and their phone number), in sorted order
        so that two handlers never wait for each other."""
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self.local(key))
            yield
