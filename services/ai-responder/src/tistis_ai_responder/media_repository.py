"""SQL of the patient files the responder shows the model (read only: the dispatcher writes
`media_fetches` and `media_files`). Takes a connection, never commits."""

from __future__ import annotations

import uuid

import asyncpg


async def recent_files(conn: asyncpg.Connection, conversation_id: uuid.UUID,
                       limit: int) -> list[asyncpg.Record]:
    """The conversation's latest patient messages with a file, newest first, with what the
    media consumer made of each (stored or failed, the file, the transcript)."""
    return await conn.fetch(
        """SELECT m.id AS message_id, m.kind, f.status, f.transcript, f.error,
                  mf.storage_key, mf.mime_type, mf.size_bytes
           FROM messages m
           JOIN media_fetches f ON f.channel = m.channel
                               AND f.platform_message_id = m.platform_message_id
           LEFT JOIN media_files mf ON mf.id = f.media_file_id
           WHERE m.conversation_id = $1 AND m.direction = 'inbound'
             AND m.kind IN ('image', 'document', 'sticker', 'audio')
           ORDER BY m.created_at DESC, m.id DESC LIMIT $2""",
        conversation_id, limit,
    )
