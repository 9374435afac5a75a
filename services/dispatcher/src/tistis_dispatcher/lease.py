"""This process's lease: a session advisory lock on a random key, held on a connection of its own
for as long as the process lives. A claim records the key; PostgreSQL drops the lock when the
process dies, so `claimer_gone` tells a dead claimer from a busy one without any timeout."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import suppress

import asyncpg
from tistis_common.db import connect
from tistis_common.logging import get_logger

log = get_logger(__name__)

LOCK_CLASS = 7_420_300  # first key of the two-key advisory locks: "dispatcher claims"


class Lease:
    def __init__(self, url: str):
        self.url = url
        self.key = secrets.randbelow(2**31 - 1) + 1
        self._conn: asyncpg.Connection | None = None

    async def acquire(self) -> None:
        self._conn = await connect(self.url, application_name="dispatcher")
        await self._conn.execute("SELECT pg_advisory_lock($1, $2)", LOCK_CLASS, self.key)
        log.info("lease.acquired", key=self.key)

    async def keep(self, stopping: asyncio.Event) -> None:
        """Take the lock again after the database came back (a restart drops every session)."""
        while not stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=2.0)
            if stopping.is_set():
                break
            if self._conn is None or self._conn.is_closed():
                try:
                    await self.acquire()
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("lease.reacquire_failed", error=repr(exc))
        await self.release()

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            with suppress(Exception):
                await self._conn.close()


async def claimer_gone(conn: asyncpg.Connection, key: int) -> bool:
    """True when no live session holds `key`'s lease (its process died)."""
    if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", LOCK_CLASS, key):
        return True  # taken for this transaction only, released at its end
    return False
