"""Photos, voice notes and documents through the real pipeline: the ingress publishes them, the
dispatcher's media consumer fetches each from the fake platform with the tenant's token and
keeps it (once), the fake speech service transcribes the voice note, the AI responder offers the
photo and the PDF to the fake Claude as content blocks, and staff open each file by a signed
link from the operator API; files staff send are uploaded once per platform and sent by id.

The fake platforms serve real small files (sandbox/src/tistis_sandbox/files: a PNG, a one-page
PDF, an Ogg/Opus voice note made with espeak-ng and opusenc). Wire formats, from the docs:
- WhatsApp Cloud API media: retrieve the URL with `GET /{media-id}` (it expires after 5
  minutes), download it with the same bearer token, upload with `POST /{phone-number-id}/media`
  (file, type, messaging_product), media ids in webhooks:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media/
- Messenger Attachment Upload API, `POST /{page-id}/message_attachments` with `message.attachment`
  (`is_reusable`) and `filedata`, answered `attachment_id`; sent as `payload.attachment_id`:
  https://developers.facebook.com/docs/messenger-platform/reference/attachment-upload-api and
  https://developers.facebook.com/docs/messenger-platform/send-messages/saving-assets
- Anthropic content blocks: `image` with a base64 `source` (jpeg, png, gif, webp; at most 5 MB of
  base64, 32 MB per request): https://docs.claude.com/en/docs/vision ; PDFs as `document` blocks
  with `media_type` application/pdf: https://docs.claude.com/en/docs/build-with-claude/pdf-support
- OpenAI transcription: `POST /v1/audio/transcriptions`, multipart `file` + `model`, answered
  `{"text": ...}` (ogg among the accepted formats):
  https://platform.openai.com/docs/api-reference/audio/createTranscription
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest
from tistis_ai_responder.content import WRITE_PLEASE
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, tenant_tx
from tistis_common.storage import media_key
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import AsyncSandboxClient, running_sandbox
from tistis_sandbox import webhooks as wh
from tistis_sandbox.mediahost import FILES

VOICE_TEXT = "Hola, me duele una muela desde ayer. ¿Tienen cita para hoy?"


@pytest.fixture(scope="module")
def sandbox_url():
    with running_sandbox() as url:
        yield url


async def api_key(settings, tenant_id) -> str:
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            _, key = await issue_api_key(conn, tenant_id, "files")
    finally:
        await conn.close()
    return key


def pipeline_settings(s, sandbox_url: str, media_dir: Path, **extra):
    return s.model_copy(update={
        "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
        "anthropic_base_url": sandbox_url, "anthropic_api_key": "sk-ant-sandbox",
        "transcription_base_url": sandbox_url, "ai_debounce_seconds": 0.1,
        "media_dir": str(media_dir), "media_fetch_backoff_seconds": 0.05, **extra,
    })


async def post_meta(ingress, channel: str, slug: str, payload: dict, secret: str) -> None:
    body, headers = wh.sign_meta(payload, secret)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
        answer = await http.post(f"/api/webhook/{channel}/{slug}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def user_turn(request: dict) -> list[dict]:
    content = request["json"]["messages"][-1]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


async def inbound_row(app_pool, tenant_id, platform_message_id: str):
    async with tenant_tx(app_pool, tenant_id) as conn:
        return await conn.fetchrow(
            "SELECT id, kind, content, payload FROM messages WHERE platform_message_id = $1",
            platform_message_id)


async def test_a_photo_a_pdf_and_a_voice_note_are_kept_understood_and_answered(
    settings, sandbox_url, make_tenant, app_pool, tmp_path
):
    tenant, other = await make_tenant(), await make_tenant()
    key, other_key = await api_key(settings, tenant.id), await api_key(settings, other.id)
    patient = f"521{uuid.uuid4().int % 10**10:010d}"
    async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
        s = pipeline_settings(s, sandbox_url, tmp_path)
        started = time.time()
        photo = await sandbox.shelve_media("foto-muela.png")
        pdf = await sandbox.shelve_media("referencia.pdf")
        voice = await sandbox.shelve_media("nota-de-voz.ogg")
        messages = [
            wh.wa_media(patient, "image", photo["id"], "image/png", caption="¿Esto es una caries?"),
            wh.wa_media(patient, "document", pdf["id"], "application/pdf",
                        filename="referencia.pdf"),
            wh.wa_media(patient, "audio", voice["id"], "audio/ogg; codecs=opus"),
        ]
        async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
                running(start_dispatcher, s):
            for count, message in enumerate(messages, start=1):
                payload = wh.whatsapp_payload([message],
                                              phone_number_id=tenant.whatsapp_phone_number_id)
                await post_meta(ingress, "whatsapp", tenant.slug, payload, s.meta_app_secret)
                replies = await sandbox.wait_for("whatsapp", recipient=patient, count=count,
                                                 within=15)
                assert len(replies) == count
            asked = [r for r in await sandbox.requests("anthropic")
                     if patient in json.dumps(r["json"]) or r["time"] >= started]
            downloads = (await sandbox.media_log())["downloads"]

            # The same photo delivered again: stored once, not downloaded again.
            again = wh.whatsapp_payload([messages[0]], phone_number_id=tenant.whatsapp_phone_number_id)
            await post_meta(ingress, "whatsapp", tenant.slug, again, s.meta_app_secret)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as api:
                photo_row = await eventually(
                    lambda: inbound_row(app_pool, tenant.id, messages[0]["id"]))
                links = {}
                for message in messages:
                    row = await eventually(lambda m=message: inbound_row(app_pool, tenant.id, m["id"]))
                    answer = await api.get(f"/api/v1/messages/{row['id']}/media",
                                           headers={"Authorization": f"Bearer {key}"})
                    assert answer.status_code == 200, answer.text
                    links[message["type"]] = answer.json()
                served = {kind: await api.get(info["url"]) for kind, info in links.items()}
                # Another tenant's key does not find the message; a tampered link opens nothing.
                foreign = await api.get(f"/api/v1/messages/{photo_row['id']}/media",
                                        headers={"Authorization": f"Bearer {other_key}"})
                tampered = await api.get(links["image"]["url"][:-3] + "AAA")
            assert (await sandbox.media_log())["downloads"] == downloads

    # Each file kept once, content-addressed under the tenant, byte for byte.
    for name, kind in (("foto-muela.png", "image"), ("referencia.pdf", "document"),
                       ("nota-de-voz.ogg", "audio")):
        data = (FILES / name).read_bytes()
        assert served[kind].status_code == 200
        assert served[kind].content == data
        assert served[kind].headers["cache-control"] == "private, no-store"
        sha = hashlib.sha256(data).hexdigest()
        assert (tmp_path / media_key(tenant.id, sha)).read_bytes() == data
    assert served["image"].headers["content-type"] == "image/png"
    assert served["document"].headers["content-type"] == "application/pdf"
    assert foreign.status_code == 404
    assert tampered.status_code == 403
    async with tenant_tx(app_pool, tenant.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM media_files") == 3
        assert await conn.fetchval(
            "SELECT count(*) FROM messages WHERE direction = 'inbound'") == 3
    assert links["audio"]["transcript"] == VOICE_TEXT
    assert links["audio"]["flag"] is None
    voice_row = await inbound_row(app_pool, tenant.id, messages[2]["id"])
    assert voice_row["content"] == VOICE_TEXT  # what the AI, the rules and the scorer read

    # The fake Claude saw the photo as an image block and the PDF as a document block, the
    # bytes themselves; the voice note as its transcript.
    blocks = [b for r in asked for b in user_turn(r)]
    images = [b for b in blocks if b["type"] == "image"]
    documents = [b for b in blocks if b["type"] == "document"]
    assert images and images[-1]["source"] == {
        "type": "base64", "media_type": "image/png",
        "data": base64.b64encode((FILES / "foto-muela.png").read_bytes()).decode()}
    assert documents and documents[-1]["source"]["media_type"] == "application/pdf"
    assert base64.b64decode(documents[-1]["source"]["data"]) == (FILES / "referencia.pdf").read_bytes()
    last_texts = " ".join(b.get("text", "") for b in user_turn(asked[-1]))
    assert VOICE_TEXT in last_texts
    # ... and the demo's answers show it had them in view.
    answers = [r["json"]["text"]["body"] for r in replies]
    assert "foto" in answers[0] and "PDF" in answers[1]


async def test_an_expired_link_is_retried_then_dead_lettered_and_the_message_still_answered(
    settings, sandbox_url, make_tenant, app_pool, tmp_path
):
    tenant = await make_tenant()
    psid = f"psid-{uuid.uuid4().hex[:12]}"
    async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
        s = pipeline_settings(s, sandbox_url, tmp_path, media_fetch_attempts=3)
        stale = await sandbox.shelve_media("foto-muela.png", expired=True)
        misses = (await sandbox.media_log())["misses"]
        payload = wh.messenger_payload(None, sender_id=psid, page_id=tenant.page_id,
                                       attachments=[wh.meta_attachment("image", stale["url"])])
        async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
                running(start_dispatcher, s):
            await post_meta(ingress, "facebook", tenant.slug, payload, s.meta_app_secret)
            replies = await sandbox.wait_for("graph", recipient=psid, count=1, within=15)
            connection = await aio_pika.connect(s.rabbitmq_url)
            try:
                channel = await connection.channel()
                queue = await channel.declare_queue("dispatcher.media.dlq", passive=True)

                async def dead_letter():
                    return await queue.get(no_ack=False, fail=False)

                parked = await eventually(dead_letter, timeout=10)
                await parked.ack()
            finally:
                await connection.close()
        assert (await sandbox.media_log())["misses"] - misses == 3  # three prompt attempts
    assert replies, "the patient was answered although the photo could not be fetched"
    assert "expired" in parked.headers["x-error"]
    async with tenant_tx(app_pool, tenant.id) as conn:
        stored = await conn.fetchrow("SELECT kind, payload FROM messages WHERE direction = 'inbound'")
        fetch = await conn.fetchrow("SELECT status, error FROM media_fetches")
    assert stored["kind"] == "image" and stored["payload"]["media"]["status"] == "failed"
    assert fetch["status"] == "failed" and "403" in fetch["error"]


async def test_a_voice_note_without_transcription_gets_a_polite_request_and_is_flagged(
    settings, sandbox_url, make_tenant, app_pool, tmp_path
):
    tenant = await make_tenant()
    key = await api_key(settings, tenant.id)
    patient = f"521{uuid.uuid4().int % 10**10:010d}"
    async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
        s = pipeline_settings(s, sandbox_url, tmp_path, transcription_base_url=None)
        voice = await sandbox.shelve_media("nota-de-voz.ogg")
        message = wh.wa_media(patient, "audio", voice["id"], "audio/ogg; codecs=opus")
        async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
                running(start_dispatcher, s):
            await post_meta(ingress, "whatsapp", tenant.slug, wh.whatsapp_payload(
                [message], phone_number_id=tenant.whatsapp_phone_number_id), s.meta_app_secret)
            replies = await sandbox.wait_for("whatsapp", recipient=patient, count=1, within=15)
            row = await eventually(lambda: inbound_row(app_pool, tenant.id, message["id"]))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as api:
                info = (await api.get(f"/api/v1/messages/{row['id']}/media",
                                      headers={"Authorization": f"Bearer {key}"})).json()
    assert replies[0]["json"]["text"]["body"] == WRITE_PLEASE
    assert info["flag"] == "not_transcribed" and info["transcript"] is None
    assert info["url"]  # staff can still listen to it


async def open_conversation(app_pool, tenant, channel: str) -> tuple[uuid.UUID, str]:
    """A conversation whose messaging window is open (the patient wrote a minute ago)."""
    account = {"whatsapp": tenant.whatsapp_phone_number_id, "facebook": tenant.page_id,
               "instagram": tenant.instagram_account_id, "tiktok": tenant.tiktok_business_id}
    user = (f"521{uuid.uuid4().int % 10**10:010d}" if channel == "whatsapp"
            else f"{channel}-{uuid.uuid4().hex[:12]}")
    async with tenant_tx(app_pool, tenant.id) as conn:
        lead_id = await conn.fetchval(
            """INSERT INTO leads (tenant_id, channel, platform_user_id, last_inbound_at)
               VALUES ($1, $2, $3, now()) RETURNING id""", tenant.id, channel, user)
        conversation_id = await conn.fetchval(
            """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                          platform_conversation_id, last_inbound_at)
               VALUES ($1, $2, $3, $4, $5, now()) RETURNING id""",
            tenant.id, lead_id, channel, account[channel],
            f"conv-{uuid.uuid4().hex}" if channel == "tiktok" else None)
    return conversation_id, user


async def test_a_staff_image_reaches_each_platform_in_its_format_uploaded_once(
    settings, sandbox_url, make_tenant, app_pool, tmp_path
):
    tenant = await make_tenant()
    key = await api_key(settings, tenant.id)
    png = (FILES / "foto-muela.png").read_bytes()
    pdf = (FILES / "referencia.pdf").read_bytes()
    channels = ("whatsapp", "facebook", "instagram")
    conversations = {c: await open_conversation(app_pool, tenant, c) for c in channels}
    tiktok, _ = await open_conversation(app_pool, tenant, "tiktok")
    async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
        s = pipeline_settings(s, sandbox_url, tmp_path)
        async with running(start_ingress, s) as ingress, running(start_dispatcher, s):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}",
                                         headers={"Authorization": f"Bearer {key}"}) as api:
                for conversation_id, _ in conversations.values():
                    for data, mime in ((png, "image/png"), (png, "image/png"),
                                       (pdf, "application/pdf")):
                        answer = await api.post(
                            f"/api/v1/conversations/{conversation_id}/media", content=data,
                            params={"filename": "archivo"}, headers={"Content-Type": mime})
                        assert answer.status_code == 202, answer.text
                refused = await api.post(f"/api/v1/conversations/{tiktok}/media", content=png,
                                         headers={"Content-Type": "image/png"})
                wrong_type = await api.post(
                    f"/api/v1/conversations/{conversations['whatsapp'][0]}/media",
                    content=b"MZ\x90\x00", headers={"Content-Type": "application/x-msdownload"})
            sent = {c: await sandbox.wait_for("whatsapp" if c == "whatsapp" else "graph",
                                              recipient=user, count=3, within=15)
                    for c, (_, user) in conversations.items()}
            log = await sandbox.media_log()
    assert refused.status_code == 422 and wrong_type.status_code == 415
    accounts = {"whatsapp": tenant.whatsapp_phone_number_id, "facebook": tenant.page_id,
                "instagram": tenant.instagram_account_id}
    for channel in channels:
        uploads = [u for u in log["uploads"] if u["account_id"] == accounts[channel]]
        # The image sent twice was uploaded once; the PDF once.
        assert sorted(u["size"] for u in uploads) == sorted([len(png), len(pdf)])
        ids = {u["size"]: u["id"] for u in uploads}
        bodies = [r["json"] for r in sent[channel]]
        assert len(bodies) == 3
        if channel == "whatsapp":
            assert [u["type"] for u in uploads] == ["image/png", "application/pdf"]
            images = [b["image"] for b in bodies if b["type"] == "image"]
            assert images == [{"id": ids[len(png)]}] * 2
            documents = [b["document"] for b in bodies if b["type"] == "document"]
            assert documents == [{"id": ids[len(pdf)], "filename": "archivo"}]
        else:
            assert {u["type"] for u in uploads} == {"image", "file"} and all(
                u["reusable"] for u in uploads)
            attachments = [b["message"]["attachment"] for b in bodies]
            assert sorted(a["type"] for a in attachments) == ["file", "image", "image"]
            assert {a["payload"]["attachment_id"] for a in attachments} == set(ids.values())
