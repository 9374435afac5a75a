"""All SQL of the `tistis` command that is its own (the tenant administration it shares with the
services is `tistis_common.admin`'s), returning typed rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from tistis_common.db import conn_tenant_tx

if TYPE_CHECKING:
    from collections.abc import Sequence

# What a command reports as a one-line database failure (with OSError for an unreachable server).
DATABASE_ERROR: type[Exception] = asyncpg.PostgresError


@dataclass(frozen=True)
class AppointmentRef:
    lead_id: uuid.UUID
    conversation_id: uuid.UUID | None


async def appointment(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                      appointment_id: uuid.UUID) -> AppointmentRef | None:
    async with conn_tenant_tx(conn, tenant_id):
        row = await conn.fetchrow(
            "SELECT lead_id, conversation_id FROM appointments WHERE id = $1 AND tenant_id = $2",
            appointment_id, tenant_id)
    return None if row is None else AppointmentRef(row["lead_id"], row["conversation_id"])


async def ping(conn: asyncpg.Connection) -> None:
    """The role can log in and run a statement (raises if not)."""
    await conn.fetchval("SELECT 1")


async def tenant_slugs(conn: asyncpg.Connection) -> Sequence[str]:
    return [r["slug"] for r in await conn.fetch("SELECT slug FROM tenants ORDER BY slug")]
