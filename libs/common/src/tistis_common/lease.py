"""A process's lease: a session advisory lock on a random key of its own, held for as long as the
process lives. A claim records the key; PostgreSQL drops the lock the moment the process's session
dies (kill -9, OOM, a lost connection), so whoever finds the claim can tell a dead claimer from a
busy one without any timeout (`holder_gone`). Used by the dispatcher (send claims) and the
ai-responder (reply leases), each with its own lock class."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import suppress
from typing import TYPE_CHECKING

from tistis_common.db import DATABASE_ERRORS, connect
from tistis_common.logging import get_logger

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)


class ProcessLease:
    """On a connection of its own (`url`), or on one taken from the service's `pool` for good
    (so that the service stays within its pool size)."""

    def __init__(self, lock_class: int, *, url: str | None = None, pool: asyncpg.Pool | None = None,
                 application_name: str | None = None):
        assert (url is None) != (pool is None), "a url or a pool"
        self.lock_class = lock_class
        self.url = url
        self.pool = pool
        self.application_name = application_name
        self.key = secrets.randbelow(2**31 - 1) + 1
        self._conn: asyncpg.Connection | None = None

    async def acquire(self) -> None:
        if self.pool is not None:
            conn = await self.pool.acquire()
        else:
            assert self.url is not None
            conn = await connect(self.url, application_name=self.application_name)
        try:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", self.lock_class, self.key)
        except BaseException:
            await self._drop(conn)
            raise
        self._conn = conn
        log.info("lease.acquired", key=self.key)

    async def keep(self, stopping: asyncio.Event) -> None:
        """Take the lock again after the database came back (a restart drops every session)."""
        while not stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=2.0)
            if stopping.is_set():
                break
            if self._conn is None or self._conn.is_closed():
                await self.release()
                try:
                    await self.acquire()
                except DATABASE_ERRORS as exc:
                    log.warning("lease.reacquire_failed", error=repr(exc))
        await self.release()

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._drop(conn)

    async def _drop(self, conn: asyncpg.Connection) -> None:
        """Closed, or unlocked and back to the pool (whose release keeps session state)."""
        with suppress(Exception):
            if self.pool is not None:
                with suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1, $2)", self.lock_class,
                                       self.key)
                await self.pool.release(conn)
            else:
                await conn.close()


async def holder_gone(conn: asyncpg.Connection, lock_class: int, key: int) -> bool:
    """True when no live session holds `key`'s lease (its process died). The test lock is taken
    for the caller's transaction only (in autocommit: the statement)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", lock_class, key))
