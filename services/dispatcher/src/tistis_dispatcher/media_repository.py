"""SQL of patient files for the dispatcher (`media_files`, `media_fetches`, `media_uploads`).
Each function takes a tenant-scoped connection and never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from tistis_common.media_files import keep_file

__all__ = ["EarlierFetch", "MediaConnection", "StoredFile", "connection_for", "fetched",
           "file_by_sha", "keep_file", "record_fetch", "record_upload", "upload_of"]


@dataclass(frozen=True)
class MediaConnection:
    id: uuid.UUID
    platform_account_id: str
    access_token: str | None  # sealed (tistis_common.secrets)
    settings: dict[str, Any] | None
    enabled: bool


@dataclass(frozen=True)
class EarlierFetch:
    """An earlier delivery's fetch, with its file when it was stored."""

    status: str
    error: str | None
    transcript: str | None
    sha256: str | None
    size_bytes: int | None
    mime_type: str | None


@dataclass(frozen=True)
class StoredFile:
    id: uuid.UUID
    storage_key: str
    mime_type: str
    size_bytes: int
    filename: str | None


async def connection_for(conn: asyncpg.Connection, channel: str,
                         platform_account_id: str) -> MediaConnection | None:
    """The channel connection (and token) the message arrived on, else the tenant's first."""
    row = await conn.fetchrow(
        """SELECT id, platform_account_id, access_token, settings, enabled
           FROM channel_connections WHERE channel = $1
           ORDER BY (platform_account_id = $2) DESC, enabled DESC, created_at LIMIT 1""",
        channel, platform_account_id,
    )
    return None if row is None else MediaConnection(**row)


async def fetched(conn: asyncpg.Connection, channel: str,
                  platform_message_id: str) -> EarlierFetch | None:
    """What an earlier delivery of this message fetched (a redelivery does not fetch again)."""
    row = await conn.fetchrow(
        """SELECT f.status, f.error, f.transcript, m.sha256, m.size_bytes, m.mime_type
           FROM media_fetches f LEFT JOIN media_files m ON m.id = f.media_file_id
           WHERE f.channel = $1 AND f.platform_message_id = $2""",
        channel, platform_message_id,
    )
    return None if row is None else EarlierFetch(**row)


async def record_fetch(conn: asyncpg.Connection, tenant_id: uuid.UUID, channel: str,
                       platform_message_id: str, platform_user_id: str,
                       file_id: uuid.UUID | None, status: str, error: str | None,
                       transcript: str | None) -> None:
    await conn.execute(
        """INSERT INTO media_fetches (tenant_id, channel, platform_message_id, platform_user_id,
                                      media_file_id, status, error, transcript)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (tenant_id, channel, platform_message_id) DO UPDATE SET
             media_file_id = EXCLUDED.media_file_id, status = EXCLUDED.status,
             error = EXCLUDED.error, transcript = EXCLUDED.transcript""",
        tenant_id, channel, platform_message_id, platform_user_id, file_id, status,
        error[:1000] if error else None, transcript,
    )


async def file_by_sha(conn: asyncpg.Connection, sha256: str) -> StoredFile | None:
    row = await conn.fetchrow(
        "SELECT id, storage_key, mime_type, size_bytes, filename FROM media_files WHERE sha256 = $1",
        sha256,
    )
    return None if row is None else StoredFile(**row)


async def upload_of(conn: asyncpg.Connection, file_id: uuid.UUID, channel: str,
                    platform_account_id: str) -> str | None:
    media_id: str | None = await conn.fetchval(
        """SELECT platform_media_id FROM media_uploads
           WHERE media_file_id = $1 AND channel = $2 AND platform_account_id = $3
             AND expires_at > now()""",
        file_id, channel, platform_account_id,
    )
    return media_id


async def record_upload(conn: asyncpg.Connection, tenant_id: uuid.UUID, file_id: uuid.UUID,
                        channel: str, platform_account_id: str, media_id: str,
                        expires_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO media_uploads (tenant_id, media_file_id, channel, platform_account_id,
                                      platform_media_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id, media_file_id, channel, platform_account_id) DO UPDATE SET
             platform_media_id = EXCLUDED.platform_media_id, uploaded_at = now(),
             expires_at = EXCLUDED.expires_at""",
        tenant_id, file_id, channel, platform_account_id, media_id, expires_at,
    )
