"""asyncpg access. Every tenant-owned query runs in a tenant scope (`scope`, the only place
`app.tenant_id` is set, which the row level security policies check): `tenant_tx` for one short
transaction, `tenant_session` for a handler's few statements, `conn_tenant_tx` on a connection
the caller already holds (under the conversation lock)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import asyncpg

# The database away (closed pool, refused or dropped connection, a restart, timeout): a retry may
# succeed.
DATABASE_AWAY: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.TooManyConnectionsError,
)
# Any failure of the database or of a statement (for code outside repositories that must not
# import asyncpg, e.g. to keep a lease loop alive or print one line in the CLI).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


# The tenant scope is cleared lazily. A connection given back by `tenant_session` keeps its
# session scope; the next acquirer that scopes (`tenant_session`, `tenant_tx`) overwrites it,
# and any other acquirer gets it cleared first (`_clear_stale_scope`). That is one round trip
# per scoped use instead of two (asyncpg's reset query on every release: RESET ALL, CLOSE ALL,
# UNLISTEN *, pg_advisory_unlock_all, none of which we need: cursors live in transactions,
# nothing LISTENs on a pooled connection, and the lease unlocks its own lock).
_scoped_backends: set[int] = set()  # server pids whose session scope may be set
_scoping: ContextVar[bool] = ContextVar("tistis_scoping", default=False)


async def scope(conn: asyncpg.Connection, tenant_id: uuid.UUID | None, *, session: bool = False) -> None:
    """The one place the tenant scope (`app.tenant_id`, what the row level security policies
    read) is set: for the current transaction, or with `session` for as long as the connection
    lives (None clears it)."""
    await conn.execute("SELECT set_config('app.tenant_id', $1, $2)",
                       "" if tenant_id is None else str(tenant_id), not session)


async def _clear_stale_scope(conn: asyncpg.Connection) -> None:
    pid = conn.get_server_pid()
    if pid in _scoped_backends and not _scoping.get():
        await scope(conn, None, session=True)
        _scoped_backends.discard(pid)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """On release (asyncpg has rolled back any open transaction before): nothing to undo."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10,
                      application_name: str | None = None) -> asyncpg.Pool:
    """`application_name`: the service, so that `pg_stat_activity` tells whose connections are whose."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30,
        server_settings={"application_name": application_name} if application_name else None,
        setup=_clear_stale_scope, reset=_keep_session,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
    """One short transaction scoped to one tenant (RLS sees only its rows)."""
    async with _acquire_to_scope(pool) as conn, conn.transaction():
        await scope(conn, tenant_id)
        yield conn


@asynccontextmanager
async def tenant_session(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection scoped to one tenant for as long as it is held: for a handler's few
    statements that are each atomic on their own (autocommit), or that open their own
    `conn.transaction()`. One round trip to scope it instead of BEGIN, set_config and COMMIT per
    transaction. The scope outlives the release; the next unscoped acquirer clears it."""
    async with _acquire_to_scope(pool) as conn:
        _scoped_backends.add(conn.get_server_pid())
        await scope(conn, tenant_id, session=True)
        yield conn


@asynccontextmanager
async def _acquire_to_scope(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection whose stale scope (if any) the caller is about to overwrite."""
    token = _scoping.set(True)  # read by `_clear_stale_scope`, which runs inside acquire
    try:
        conn = await pool.acquire()
    finally:
        _scoping.reset(token)
    try:
        yield conn
    finally:
        await pool.release(conn)


@asynccontextmanager
async def conn_tenant_tx(
    conn: asyncpg.Connection, tenant_id: uuid.UUID
) -> AsyncIterator[asyncpg.Connection]:
    """`tenant_tx` on a connection the caller already holds (e.g. one keeping a session lock)."""
    async with conn.transaction():
        await scope(conn, tenant_id)
        yield conn


# The shape the tenants table enforces; anything else (NUL bytes, SQL, 10 kB) is no tenant, and
# is answered without asking the database (which would refuse a NUL with an error).
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


async def tenant_by_slug(pool: asyncpg.Pool, slug: str) -> asyncpg.Record | None:
    """The tenant directory is readable without a tenant scope (it is how the scope is found)."""
    if not SLUG.fullmatch(slug):
        return None
    return await pool.fetchrow("SELECT id, slug, name, timezone FROM tenants WHERE slug = $1", slug)


async def tenant_ids(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """For periodic jobs that visit each tenant in turn, each in its own scope."""
    return [r["id"] for r in await pool.fetch("SELECT id FROM tenants ORDER BY slug")]


async def connect(url: str, application_name: str | None = None) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool (CLI, migrations, admin)."""
    conn = await asyncpg.connect(
        url, server_settings={"application_name": application_name} if application_name else None)
    await _init_connection(conn)
    return conn
