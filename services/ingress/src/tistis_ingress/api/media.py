"""Patient files in the operator API: staff open them by short-lived signed links, and send
their own (an image or a PDF) to a patient.

- `GET /api/v1/messages/{id}/media` (tenant API key): what the message's file is (type, size,
  transcript, whether it could be fetched) and a link to it that expires in
  `media_link_ttl_seconds`. RLS keeps a key inside its tenant: another tenant's message is 404.
- `GET /api/v1/inbox/messages/{id}/media`: the same, for staff in the inbox (session cookie or
  personal key), so the open conversation shows a patient's file.
- `GET /api/v1/media/{token}`: the bytes, for whoever holds a valid link (a browser tab opened
  from the inbox); the token names one file of one tenant and is checked by HMAC and expiry.
- `POST /api/v1/conversations/{id}/media` (tenant API key): the request body is the file
  (`Content-Type` image/jpeg, image/png or application/pdf); it is kept in the media store and
  sent as an agent message (`OutboundMessage` kind media); the dispatcher uploads it once per
  platform account and sends it by id. TikTok sends text only: 422.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from tistis_common import metrics
from tistis_common.db import tenant_tx
from tistis_common.events import Channel, MediaRef, OutboundMessage
from tistis_common.ids import stable_id
from tistis_common.storage import (
    FileMissing,
    media_key,
    sha256_hex,
    sign_link,
    verify_link,
)

from . import media_repository as repo
from . import repository
from .auth import tenant_key
from .common import not_found, publish_or_503
from .principal import Principal, staff
from .problems import errors

if TYPE_CHECKING:
    from ..deps import Deps

ROUTE = "media"
INBOX_ROUTE = "inbox.media"
# What staff may send, and the largest that every platform with an upload API takes
# (WhatsApp images 5 MB; Messenger/Instagram attachments 25 MB; WhatsApp documents 100 MB).
SENDABLE = {"image/jpeg": ("image", 5 * 1024 * 1024), "image/png": ("image", 5 * 1024 * 1024),
            "application/pdf": ("document", 25 * 1024 * 1024)}
SERVED_TYPES = ("image/png", "image/jpeg", "application/pdf", "audio/ogg",
                "application/octet-stream")


def media_router(deps: Deps) -> APIRouter:
    pool, publisher, settings, store = deps.pool, deps.publisher, deps.settings, deps.store
    router = APIRouter(prefix="/api/v1", tags=["media"])
    tenant = Depends(tenant_key(pool, ROUTE))
    who = Depends(staff(pool, settings, INBOX_ROUTE))

    async def describe(tenant_id: uuid.UUID, message_id: uuid.UUID, route: str) -> dict:
        async with tenant_tx(pool, tenant_id) as conn:
            found = await repo.message_file(conn, message_id)
        if found is None:
            raise not_found(route, "file for this message")
        link: dict[str, Any] = {"url": None, "expires_at": None}
        if found["file_id"] is not None:
            token, expires = sign_link(settings.media_signing_key, tenant_id, found["file_id"],
                                       settings.media_link_ttl_seconds)
            link = {"url": f"/api/v1/media/{token}", "expires_at": expires}
        metrics.API_REQUESTS.labels(route, "ok").inc()
        flag = None
        if found["status"] == "failed":
            flag = "not_fetched"
        elif found["kind"] == "audio" and not found["transcript"]:
            flag = "not_transcribed"  # the patient was asked to write; someone should listen
        return {"message_id": str(message_id), "kind": found["kind"], "status": found["status"],
                "mime_type": found["mime_type"], "size": found["size_bytes"],
                "filename": found["filename"], "transcript": found["transcript"],
                "error": found["error"], "flag": flag, **link}

    @router.get("/messages/{message_id}/media", responses=errors(401, 404))
    async def message_media(message_id: uuid.UUID, tenant_id: uuid.UUID = tenant) -> dict:
        return await describe(tenant_id, message_id, ROUTE)

    @router.get("/inbox/messages/{message_id}/media", tags=["inbox"],
                responses=errors(401, 404, 429))
    async def inbox_message_media(message_id: uuid.UUID, principal: Principal = who) -> dict:
        return await describe(principal.tenant_id, message_id, INBOX_ROUTE)

    @router.get("/media/{token}", response_class=Response, responses={
        200: {"content": {t: {} for t in SERVED_TYPES}, "description": "the file"},
        **errors(403, 404)})
    async def open_file(token: str) -> Response:
        verified = verify_link(settings.media_signing_key, token) if len(token) < 400 else None
        if verified is None:
            metrics.API_REQUESTS.labels(ROUTE, "unauthorized").inc()
            raise HTTPException(403, "link invalid or expired")
        tenant_id, file_id = verified
        async with tenant_tx(pool, tenant_id) as conn:
            row = await repo.file_by_id(conn, file_id)
        if row is None:
            raise not_found(ROUTE, "file")
        try:
            data = await store.get(row["storage_key"])
        except FileMissing:
            raise not_found(ROUTE, "file") from None
        metrics.API_REQUESTS.labels(ROUTE, "ok").inc()
        return Response(data, media_type=row["mime_type"], headers={
            "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline"})

    @router.post("/conversations/{conversation_id}/media", status_code=202,
                 responses=errors(401, 404, 413, 415, 503))
    async def send_file(
        request: Request, conversation_id: uuid.UUID, tenant_id: uuid.UUID = tenant,
        filename: str | None = Query(None, min_length=1, max_length=200, pattern=r"^[^\x00/\\]+$"),
        caption: str | None = Query(None, min_length=1, max_length=1024, pattern=r"^[^\x00]+$"),
        client_message_id: str | None = Query(None, min_length=1, max_length=200,
                                               pattern=r"^[^\x00]+$"),
    ) -> dict:
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime not in SENDABLE:
            raise HTTPException(415, "send image/jpeg, image/png or application/pdf")
        kind, limit = SENDABLE[mime]
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"over {limit} bytes")
        data = await request.body()
        if len(data) > limit or not data:
            raise HTTPException(413 if data else 415, f"between 1 and {limit} bytes")
        async with tenant_tx(pool, tenant_id) as conn:
            conv = await repository.conversation(conn, conversation_id)
        if conv is None:
            raise not_found(ROUTE, "conversation")
        if conv["channel"] == Channel.TIKTOK:
            raise HTTPException(422, "TikTok sends text only")
        sha = sha256_hex(data)
        key = media_key(tenant_id, sha)
        await store.put(key, data, mime)
        async with tenant_tx(pool, tenant_id) as conn:
            await repo.keep_file(conn, tenant_id, sha, key, mime, len(data), filename)
        message_id = (stable_id("agent-media", tenant_id, client_message_id)
                      if client_message_id else uuid.uuid4())
        event = OutboundMessage(
            event_id=stable_id("agent-media-event", message_id), tenant_id=tenant_id,
            channel=Channel(conv["channel"]), message_id=message_id, conversation_id=conv["id"],
            lead_id=conv["lead_id"], recipient_id=conv["platform_user_id"], sender_type="agent",
            purpose="agent", kind="media", media_type=kind,  # type: ignore[arg-type]
            text=caption,
            media=MediaRef(status="stored", sha256=sha, size=len(data), mime_type=mime,
                           filename=filename, caption=caption),
        )
        await publish_or_503(publisher, [event], ROUTE)
        return {"status": "queued", "message_id": str(message_id), "sha256": sha}

    return router
