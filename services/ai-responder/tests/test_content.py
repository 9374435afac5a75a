"""What the model is offered of the patient's files: the latest photos and PDFs as base64
`image` / `document` content blocks (Anthropic: images jpeg/png/gif/webp up to 5 MB of base64,
https://docs.claude.com/en/docs/vision ; PDFs as `document` blocks,
https://docs.claude.com/en/docs/build-with-claude/pdf-support), the rest named in text."""

from __future__ import annotations

import base64
import uuid

from tistis_ai_responder import content
from tistis_ai_responder.context import conversation_messages
from tistis_ai_responder.media_repository import PatientFile
from tistis_common.storage import FileStore

PNG = b"\x89PNG fake bytes"
PDF = b"%PDF-1.4 fake"


def row(kind: str, text: str | None = None, direction: str = "inbound") -> dict:
    return {"id": str(uuid.uuid4()), "direction": direction,
            "sender_type": "lead" if direction == "inbound" else "ai", "kind": kind,
            "content": text}


def file(message: dict, mime: str, size: int, status: str = "stored",
         transcript: str | None = None) -> PatientFile:
    return PatientFile(message_id=message["id"], kind=message["kind"], status=status,
                       transcript=transcript, storage_key=f"k/{message['id']}", mime_type=mime,
                       size_bytes=size)


class TestWithFiles:
    async def test_a_photo_and_a_pdf_become_blocks_before_their_text(self, tmp_path):
        store = FileStore(tmp_path)
        photo, pdf = row("image", "¿Es una caries?"), row("document")
        files = {photo["id"]: file(photo, "image/png", len(PNG)),
                 pdf["id"]: file(pdf, "application/pdf", len(PDF))}
        await store.put(f"k/{photo['id']}", PNG, "image/png")
        await store.put(f"k/{pdf['id']}", PDF, "application/pdf")
        turns = conversation_messages(await content.with_files([photo, pdf], files, store))
        assert turns == [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(PNG).decode()}},
            {"type": "text", "text": "[imagen adjunta arriba] ¿Es una caries?"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": base64.b64encode(PDF).decode()}},
            {"type": "text", "text": "[documento adjunto arriba]"},
        ]}]

    async def test_only_the_latest_files_within_the_limits_are_shown(self, tmp_path):
        store = FileStore(tmp_path)
        rows = [row("image") for _ in range(content.MAX_FILES + 1)]
        big = row("image")
        files = {r["id"]: file(r, "image/png", len(PNG)) for r in rows}
        files[big["id"]] = file(big, "image/png", content.IMAGE_MAX_BYTES + 1)
        for r in rows:
            await store.put(f"k/{r['id']}", PNG, "image/png")
        await store.put(f"k/{big['id']}", b"x" * (content.IMAGE_MAX_BYTES + 1), "image/png")
        shown = await content.with_files([*rows, big], files, store)
        assert [bool(r.get("blocks")) for r in shown] == [False, True, True, True, True, False]
        assert shown[0]["content"] == "[imagen]" and shown[-1]["content"] == "[imagen]"

    async def test_voice_notes_are_their_transcript_and_failures_are_named(self, tmp_path):
        voice, mute, lost = row("audio", "me duele una muela"), row("audio"), row("image")
        files = {voice["id"]: file(voice, "audio/ogg", 10, transcript="me duele una muela"),
                 mute["id"]: file(mute, "audio/ogg", 10),
                 lost["id"]: file(lost, "image/png", 0, status="failed")}
        shown = await content.with_files([voice, mute, lost], files, FileStore(tmp_path))
        assert [r["content"] for r in shown] == [
            "[nota de voz, transcrita] me duele una muela", "[nota de voz sin transcribir]",
            "[imagen que no se pudo abrir]"]
        assert content.voice_note_unheard(mute["id"], files)
        assert not content.voice_note_unheard(voice["id"], files)
