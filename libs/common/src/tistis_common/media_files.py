"""SQL of `media_files` that several services share (migration 1300 names the writers): keeping a
file once per tenant and content, and deleting files with what points at them (retention in
the scheduler, erasure by the `tistis` command). Takes a tenant-scoped connection, never commits;
the bytes themselves are the store's (tistis_common.storage)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg


async def keep_file(conn: asyncpg.Connection, tenant_id: uuid.UUID, sha256: str, key: str,
                    mime_type: str, size: int, filename: str | None) -> uuid.UUID:
    """The file's row, once per tenant and content; a file sent again counts as used now."""
    file_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO media_files (tenant_id, sha256, storage_key, mime_type, size_bytes, filename)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, sha256) DO UPDATE SET last_used_at = now()
           RETURNING id""",
        tenant_id, sha256, key, mime_type, size, filename,
    )
    return file_id


async def delete_unused_since(conn: asyncpg.Connection, before: datetime,
                             limit: int) -> list[str]:
    """The rows of files no message has carried since `before` (oldest first), deleted; their
    storage keys, for the caller to delete from the store once this commits."""
    rows = await conn.fetch(
        """DELETE FROM media_files WHERE id IN (
             SELECT id FROM media_files WHERE last_used_at < $1
             ORDER BY last_used_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING storage_key""",
        before, limit,
    )
    return [r["storage_key"] for r in rows]


async def retention_days(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int | None:
    """The tenant's own `settings.media_retention_days`, if it set one."""
    value = await conn.fetchval(
        "SELECT settings->>'media_retention_days' FROM tenants WHERE id = $1", tenant_id)
    return int(value) if value is not None and str(value).isdigit() else None


@dataclass(frozen=True)
class StoredFile:
    id: uuid.UUID
    storage_key: str


async def files_of_patient(conn: asyncpg.Connection, channel: str,
                           platform_user_id: str) -> list[StoredFile]:
    """Every file a patient sent (files the clinic sent them may have gone to others too)."""
    rows = await conn.fetch(
        """SELECT mf.id, mf.storage_key FROM media_files mf
           WHERE mf.id IN (SELECT media_file_id FROM media_fetches
                           WHERE channel = $1 AND platform_user_id = $2)""",
        channel, platform_user_id,
    )
    return [StoredFile(r["id"], r["storage_key"]) for r in rows]


async def delete_patient_messages(conn: asyncpg.Connection, channel: str,
                                  platform_user_id: str) -> int:
    """A patient's messages and fetch records on one channel; returns how many messages."""
    await conn.execute("DELETE FROM media_fetches WHERE channel = $1 AND platform_user_id = $2",
                       channel, platform_user_id)
    deleted = await conn.execute(
        """DELETE FROM messages WHERE lead_id IN (
             SELECT id FROM leads WHERE channel = $1 AND platform_user_id = $2)""",
        channel, platform_user_id)
    return int(deleted.split()[-1])


async def delete_files(conn: asyncpg.Connection, file_ids: list[uuid.UUID]) -> int:
    """The rows of deleted files; fetch records keep their reason, without the file."""
    deleted = await conn.execute("DELETE FROM media_files WHERE id = ANY($1::uuid[])", file_ids)
    return int(deleted.split()[-1])
