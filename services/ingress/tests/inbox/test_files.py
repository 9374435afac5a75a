"""A patient's file in the open conversation: staff get its short-lived signed link with their
session (the link the tenant-key route `GET /api/v1/messages/{id}/media` gives), and the link
opens the bytes; another clinic's staff get 404 for it (test_isolation's crossing case too)."""

from __future__ import annotations

import uuid

from tistis_common.storage import media_key, open_store, sha256_hex

from .conftest import login
from .test_clinic import owner_sql

INBOX = "/api/v1/inbox"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


async def a_patient_photo(settings, store, c) -> uuid.UUID:
    """As the media consumer leaves it: the file kept, its fetch row, the image message."""
    sha = sha256_hex(PNG)
    key = media_key(c.tenant.id, sha)
    await store.put(key, PNG, "image/png")
    wamid = f"wamid.{uuid.uuid4().hex}"
    _, _, message = await owner_sql(settings, c.tenant.id, (
        """INSERT INTO media_files (tenant_id, sha256, storage_key, mime_type, size_bytes,
                                    filename)
           VALUES ($1, $2, $3, 'image/png', $4, 'muela.png') RETURNING id""",
        c.tenant.id, sha, key, len(PNG)), (
        """INSERT INTO media_fetches (tenant_id, channel, platform_message_id, platform_user_id,
                                      media_file_id, status)
           SELECT $1, 'whatsapp', $2, $3, id, 'stored' FROM media_files WHERE sha256 = $4
           RETURNING 1""", c.tenant.id, wamid, c.wa_id, sha), (
        """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                 sender_type, kind, content, platform_message_id)
           VALUES ($1, $2, $3, 'whatsapp', 'inbound', 'lead', 'image', 'mi muela', $4)
           RETURNING id""", c.tenant.id, c.conversation_id, c.lead_id, wamid))
    return message


async def test_staff_open_a_patients_photo_from_the_conversation(http, inbox, clinic, settings):
    c = await clinic()
    store = await open_store(inbox.settings)
    try:
        message = await a_patient_photo(settings, store, c)
    finally:
        await store.close()
    session = await login(http, c)
    try:
        detail = (await session.get(f"{INBOX}/conversations/{c.conversation_id}")).json()
        assert [m["kind"] for m in detail["messages"] if m["id"] == str(message)] == ["image"]
        file = await session.get(f"{INBOX}/messages/{message}/media")
        assert file.status_code == 200
        body = file.json()
        assert (body["kind"], body["mime_type"], body["size"], body["filename"]) == (
            "image", "image/png", len(PNG), "muela.png")
        assert body["url"].startswith("/api/v1/media/") and body["expires_at"]
        # the link is the browser's to open: no cookie or key needed, it is signed
        opened = await http.get(body["url"])
        assert opened.status_code == 200 and opened.content == PNG
        assert opened.headers["content-type"] == "image/png"
        text_only = detail["messages"][0]["id"]
        assert (await session.get(f"{INBOX}/messages/{text_only}/media")).status_code == 404
    finally:
        await session.aclose()
    assert (await http.get(f"{INBOX}/messages/{message}/media")).status_code == 401


async def test_another_clinics_staff_do_not_get_the_link(http, inbox, clinic, settings):
    a, b = await clinic(), await clinic()
    store = await open_store(inbox.settings)
    try:
        message = await a_patient_photo(settings, store, a)
    finally:
        await store.close()
    for headers in (b.auth, {"Authorization": f"Bearer {b.tenant_key}"}):
        answer = await http.get(f"{INBOX}/messages/{message}/media", headers=headers)
        assert answer.status_code == 404 and "/api/v1/media/" not in answer.text
