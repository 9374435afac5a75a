"""Sending one of our files (a staff upload, the quote tool's PDF): uploaded to the platform once
per account, then sent by its id.

- WhatsApp Cloud API: `POST /{version}/{phone_number_id}/media`, multipart `file`, `type`,
  `messaging_product=whatsapp` -> `{"id": ...}`; an uploaded media id lives 30 days.
- Messenger / Instagram: Attachment Upload API, `POST /{version}/{page_id}/message_attachments`,
  multipart `message={"attachment": {"type": ..., "payload": {"is_reusable": true}}}` and
  `filedata` -> `{"attachment_id": ...}`; reusable attachment ids live 90 days.
- TikTok: text only (the guide); such a message is refused before any call.
The platform's id is kept (`media_uploads`) until a little before it expires; the upload is a
slow call, made without a database connection.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tistis_common import metrics
from tistis_common.db import tenant_session
from tistis_common.events import OutboundMessage
from tistis_common.logging import get_logger
from tistis_common.storage import FileMissing, MediaStore

from tistis_dispatcher import media_repository as repo
from tistis_dispatcher.messenger import ATTACHMENT_TYPES
from tistis_dispatcher.platform import (
    Account,
    PlatformClient,
    Rejected,
    SendError,
    TokenInvalid,
    Transient,
    classify_graph,
)

log = get_logger(__name__)

# Stands in for the platform's media id while the bodies are checked, before the upload.
PLACEHOLDER = "tistis-upload-pending"
LIFETIME = {"whatsapp": timedelta(days=29), "facebook": timedelta(days=89),
            "instagram": timedelta(days=89)}
# One upload at a time per file and account in this process: the same image sent to several
# patients at once is uploaded once (replicas may each upload it once: harmless, two ids).
_UPLOADING: defaultdict[tuple[str, str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


def needs_upload(event: OutboundMessage) -> bool:
    """A media message carrying one of our stored files rather than a platform id or a link."""
    return (event.kind == "media" and event.media is not None
            and event.media.status == "stored" and bool(event.media.sha256))


def with_media_id(event: OutboundMessage, media_id: str) -> OutboundMessage:
    assert event.media is not None
    return event.model_copy(update={"media": event.media.model_copy(update={"id": media_id})})


async def platform_media_id(event: OutboundMessage, account: Account, platform: PlatformClient,
                            store: MediaStore, pool: Any) -> str:
    """The id to send `event.media` by on this account: kept from an earlier upload, or now."""
    assert event.media is not None and event.media.sha256
    lock_key = (event.media.sha256, event.channel.value, account.platform_account_id)
    async with _UPLOADING[lock_key]:
        try:
            return await _platform_media_id(event, account, platform, store, pool)
        finally:
            if len(_UPLOADING) > 10_000:  # bounded: a forgotten lock only costs an upload
                _UPLOADING.pop(lock_key, None)


async def _platform_media_id(event: OutboundMessage, account: Account, platform: PlatformClient,
                             store: MediaStore, pool: Any) -> str:
    assert event.media is not None and event.media.sha256
    channel = event.channel.value
    async with tenant_session(pool, event.tenant_id) as conn:
        row = await repo.file_by_sha(conn, event.media.sha256)
        if row is None:
            raise Rejected(f"file {event.media.sha256[:12]} is not stored")
        known = await repo.upload_of(conn, row.id, channel, account.platform_account_id)
    if known is not None:
        metrics.MEDIA_UPLOADS.labels(channel, "reused").inc()
        return known
    try:
        data = await store.get(row.storage_key)
    except FileMissing as exc:
        raise Rejected("the file was deleted (retention or erasure)") from exc
    filename = event.media.filename or row.filename or _default_name(row.mime_type)
    try:
        media_id = await _upload(platform, account, event, data, row.mime_type, filename)
    except SendError:
        metrics.MEDIA_UPLOADS.labels(channel, "failed").inc()
        raise
    async with tenant_session(pool, event.tenant_id) as conn:
        await repo.record_upload(conn, event.tenant_id, row.id, channel,
                                 account.platform_account_id, media_id,
                                 datetime.now(UTC) + LIFETIME.get(channel, timedelta(days=1)))
    metrics.MEDIA_UPLOADS.labels(channel, "uploaded").inc()
    log.info("media.uploaded", platform_media_id=media_id, size=len(data))
    return media_id


def _default_name(mime_type: str) -> str:
    return {"application/pdf": "documento.pdf", "image/png": "imagen.png",
            "image/jpeg": "imagen.jpg"}.get(mime_type, "archivo")


async def _upload(platform: PlatformClient, account: Account, event: OutboundMessage, data: bytes,
                  mime_type: str, filename: str) -> str:
    if not account.access_token:
        raise TokenInvalid("the connection has no access token", 190)
    settings = platform.settings
    version = account.settings.get("api_version") or settings.graph_api_version
    base = f"{settings.graph_api_base_url.rstrip('/')}/{version}/{account.platform_account_id}"
    headers = {"Authorization": f"Bearer {account.access_token}"}
    form: dict[str, str]
    if event.channel == "whatsapp":
        url, form = f"{base}/media", {"messaging_product": "whatsapp", "type": mime_type}
        files = {"file": (filename, data, mime_type)}
    else:
        kind = ATTACHMENT_TYPES.get(event.media_type or "", "file")
        url = f"{base}/message_attachments"
        form = {"message": json.dumps({"attachment": {"type": kind,
                                                      "payload": {"is_reusable": True}}})}
        files = {"filedata": (filename, data, mime_type)}
    try:
        answer = await platform.http.post(url, headers=headers, data=form, files=files)
    except httpx.HTTPError as exc:
        raise Transient(f"upload transport: {type(exc).__name__}") from exc
    if answer.status_code >= 300:
        raise classify_graph(answer)
    body = answer.json() if answer.content else {}
    media_id = body.get("id") or body.get("attachment_id")
    if not media_id:
        raise Transient("upload answer without an id", None, answer.status_code)
    return str(media_id)
