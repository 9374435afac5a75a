"""SQL of the operator API's file routes. Takes a tenant-scoped connection, never commits."""

from __future__ import annotations

import uuid

import asyncpg
from tistis_common.media_files import keep_file

__all__ = ["file_by_id", "keep_file", "message_file"]


async def message_file(conn: asyncpg.Connection, message_id: uuid.UUID) -> asyncpg.Record | None:
    """A message's file: a patient's (what the media consumer fetched, or why it could not) or
    one staff sent (by its content address). None when the message has no file."""
    return await conn.fetchrow(
        """SELECT m.kind, COALESCE(f.status, 'stored') AS status, f.transcript, f.error,
                  mf.id AS file_id, mf.mime_type, mf.size_bytes, mf.filename
           FROM messages m
           LEFT JOIN media_fetches f ON m.direction = 'inbound' AND f.channel = m.channel
                                    AND f.platform_message_id = m.platform_message_id
           LEFT JOIN media_files mf ON mf.id = COALESCE(f.media_file_id, (
             SELECT x.id FROM media_files x
             WHERE f.status IS NULL AND x.sha256 = m.payload->'media'->>'sha256'))
           WHERE m.id = $1 AND (f.status IS NOT NULL OR mf.id IS NOT NULL)""",
        message_id,
    )


async def file_by_id(conn: asyncpg.Connection, file_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT storage_key, mime_type, filename FROM media_files WHERE id = $1", file_id)
