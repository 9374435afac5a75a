"""SQL of the patient files the responder shows the model (read only: the dispatcher writes
`media_fetches` and `media_files`). Takes a connection, never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields

import asyncpg


@dataclass(frozen=True)
class PatientFile:
    """A patient message with a file, and what the media consumer made of it."""

    message_id: uuid.UUID
    kind: str  # image | document | sticker | audio
    status: str  # media_fetches.status: stored, failed...
    transcript: str | None  # a voice note's
    storage_key: str | None  # in the media store, once stored
    mime_type: str | None
    size_bytes: int | None


async def recent_files(conn: asyncpg.Connection, conversation_id: uuid.UUID,
                       limit: int) -> list[PatientFile]:
    """The conversation's latest patient messages with a file, newest first, with what the
    media consumer made of each (stored or failed, the file, the transcript)."""
    rows = await conn.fetch(
        """SELECT m.id AS message_id, m.kind, f.status, f.transcript,
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
    return [PatientFile(**{f.name: r[f.name] for f in fields(PatientFile)}) for r in rows]
