"""What the model sees of the patient's files: photos as `image` content blocks, PDFs as
`document` blocks (both base64), voice notes as their transcript; within the API's limits.

Anthropic's Messages API takes images as `{"type": "image", "source": {"type": "base64",
"media_type": "image/jpeg" | "image/png" | "image/gif" | "image/webp", "data": ...}}` (at most
5 MB of base64 each, up to 100 per request) and PDFs as `{"type": "document", "source":
{"type": "base64", "media_type": "application/pdf", "data": ...}}` (at most 100 pages), with a
32 MB limit on the whole request. So only the latest few files go as blocks, inside a byte
budget; an older or larger one is named in text instead ("[imagen]"), as before.
A voice note's transcript is the message's text (the dispatcher put it there); without one the
patient is asked, politely, to write (`voice_note_unheard`), and staff see the note flagged.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tistis_common.logging import get_logger
from tistis_common.storage import FileMissing, MediaStore

from . import media_repository
from .media_repository import PatientFile

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PDF = "application/pdf"
IMAGE_MAX_BYTES = 5 * 1024 * 1024 * 3 // 4  # 5 MB of base64
FILES_BUDGET_BYTES = 16 * 1024 * 1024  # raw bytes of all blocks: about 21 MB of base64
MAX_FILES = 4  # the latest files of the conversation go as blocks
FILE_KINDS = frozenset({"image", "document", "sticker", "audio"})
WRITE_PLEASE = ("Recibimos tu nota de voz, pero por ahora no podemos escucharla. ¿Podrías "
                "escribirnos tu mensaje, por favor? Así te ayudamos más rápido.")


def mentions_files(history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the history has a message with a file (else nothing here costs a query)."""
    return any(row.get("kind") in FILE_KINDS for row in history)


async def files_for(conn: asyncpg.Connection, conversation_id: Any) -> dict[str, PatientFile]:
    """The conversation's latest files by message id (stored, failed or not transcribed)."""
    rows = await media_repository.recent_files(conn, conversation_id, MAX_FILES * 2)
    return {str(r.message_id): r for r in rows}


def voice_note_unheard(latest_id: Any, files: Mapping[str, PatientFile]) -> bool:
    """The patient's latest message is a voice note nobody could transcribe."""
    row = files.get(str(latest_id))
    return row is not None and row.kind == "audio" and not row.transcript


def _label(row: Mapping[str, Any], file: PatientFile | None, shown: bool) -> str:
    kind, text = row.get("kind"), (row.get("content") or "").strip()
    if kind == "audio":
        return f"[nota de voz, transcrita] {text}" if text else "[nota de voz sin transcribir]"
    name = {"image": "imagen", "sticker": "sticker", "document": "documento"}.get(str(kind),
                                                                                 "archivo")
    if file is not None and file.status != "stored":
        note = f"[{name} que no se pudo abrir]"
    elif shown:
        note = f"[{name} adjunta arriba]" if kind != "document" else "[documento adjunto arriba]"
    else:
        note = f"[{name}]"
    return f"{note} {text}".strip()


def _block(mime: str, data: bytes) -> dict[str, Any] | None:
    encoded = base64.standard_b64encode(data).decode()
    if mime in IMAGE_TYPES and len(data) <= IMAGE_MAX_BYTES:
        return {"type": "image", "source": {"type": "base64", "media_type": mime,
                                            "data": encoded}}
    if mime == PDF:
        return {"type": "document", "source": {"type": "base64", "media_type": PDF,
                                               "data": encoded}}
    return None


async def with_files(history: Sequence[Mapping[str, Any]], files: Mapping[str, PatientFile],
                     store: MediaStore | None) -> list[dict[str, Any]]:
    """The history rows with `blocks` on the latest patient files the model can look at, and
    every file message labelled in text."""
    chosen: set[str] = set()
    budget = FILES_BUDGET_BYTES
    for row in reversed(history):  # newest first
        file = files.get(str(row.get("id")))
        if file is None or file.status != "stored" or len(chosen) >= MAX_FILES:
            continue
        size = file.size_bytes or 0
        viewable = ((file.mime_type in IMAGE_TYPES and size <= IMAGE_MAX_BYTES)
                    or file.mime_type == PDF)
        if viewable and size <= budget:
            chosen.add(str(row["id"]))
            budget -= size
    out: list[dict[str, Any]] = []
    for row in history:
        if row.get("kind") not in FILE_KINDS:
            out.append(dict(row))
            continue
        key = str(row.get("id"))
        file = files.get(key)
        block = None
        if key in chosen and store is not None and file is not None:
            try:
                block = _block(file.mime_type or "", await store.get(file.storage_key or ""))
            except FileMissing:
                log.warning("media.missing", message_id=key)  # deleted by retention meanwhile
        labelled = {**row, "content": _label(row, file, block is not None)}
        if block is not None:
            labelled["blocks"] = [block]
        out.append(labelled)
    return out
