"""Numbered SQL migrations (`migrations/NNNN_name.sql`), applied in order under an advisory lock
so that several replicas starting at once are safe, each recorded in `schema_migrations`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from tistis_common.db import connect

if TYPE_CHECKING:
    import asyncpg

_LOCK_KEY = 7_420_001  # pg_advisory_lock key reserved for migrations
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("tistis_common.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"two migrations share a number: {sorted(versions)}")
    return sorted(found, key=lambda m: m.version)


async def applied_versions(conn: asyncpg.Connection) -> set[int]:
    return {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}


async def changed_since_applied(conn: asyncpg.Connection) -> list[str]:
    """Applied migrations whose file differs from what was applied (an edited migration: the
    schema of databases migrated before and after the edit differs)."""
    stored = {r["version"]: r["checksum"]
              for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
    return [f"{m.version:04d}_{m.name}" for m in available()
            if m.version in stored and stored[m.version] != m.checksum]


async def migrate(url: str) -> list[str]:
    """Apply what is missing; return the names applied."""
    conn = await connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                 version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = await applied_versions(conn)
        for m in available():
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
            applied_now.append(f"{m.version:04d}_{m.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        await conn.close()
    return applied_now
