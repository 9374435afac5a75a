"""Fake platform media: what patients' files look like from the outside, and where ours go.

- WhatsApp Cloud API, retrieve media URL: `GET /{version}/{media-id}` (bearer token) ->
  `{"messaging_product": "whatsapp", "url", "mime_type", "sha256", "file_size", "id"}`; the URL
  lives five minutes (`url_ttl`) and answers 404 after; downloading it needs the same bearer token.
  An unknown id is Graph error 100 (subcode 33, "Object with ID ... does not exist").
- WhatsApp media upload: `POST /{version}/{phone_number_id}/media`, multipart `file`, `type`,
  `messaging_product` -> `{"id"}`.
- Messenger / Instagram: webhook attachments carry a CDN `payload.url` that expires (403 after);
  Attachment Upload API `POST /{version}/{page_id}/message_attachments`, multipart `message`
  (attachment type, `is_reusable`) and `filedata` -> `{"attachment_id"}`.
- Speech-to-text, OpenAI's wire format: `POST /v1/audio/transcriptions`, multipart `file` and
  `model` -> `{"text"}`. It cannot recognise speech: it answers the `TRANSCRIPT=` comment of an
  Ogg/Opus file's OpusTags header (what the sandbox's voice notes say, see files/README.md).
- Controls: `POST /_sandbox/media` (the body is the file; or `?sample=foto-muela.png`) shelves a
  file and answers its media id and CDN URL; `?expired=true` gives out links that are already
  expired; `GET /_sandbox/media/uploads` lists what our side uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from tistis_sandbox.meta import graph_error

FILES = Path(__file__).parent / "files"
SAMPLES = {"foto-muela.png": "image/png", "referencia.pdf": "application/pdf",
           "nota-de-voz.ogg": "audio/ogg; codecs=opus"}
URL_TTL_SECONDS = 300.0


@dataclass
class Shelved:
    data: bytes
    mime_type: str
    expired: bool = False


@dataclass
class MediaShelf:
    items: dict[str, Shelved] = field(default_factory=dict)
    links: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (id, expires)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    downloads: int = 0
    misses: int = 0  # downloads refused: a link unknown or past its expiry
    url_ttl: float = URL_TTL_SECONDS

    def shelve(self, data: bytes, mime_type: str, expired: bool = False) -> str:
        media_id = str(secrets.randbelow(10**15) + 10**15)
        self.items[media_id] = Shelved(data, mime_type, expired)
        return media_id

    def link(self, media_id: str) -> str:
        token = secrets.token_urlsafe(24)
        expires = 0.0 if self.items[media_id].expired else time.time() + self.url_ttl
        self.links[token] = (media_id, expires)
        return token

    def open(self, token: str) -> Shelved | None:
        found = self.links.get(token)
        if found is None or found[1] < time.time():
            return None
        return self.items.get(found[0])


def sample_file(name: str) -> tuple[bytes, str]:
    """A committed sample file and its content type."""
    return (FILES / name).read_bytes(), SAMPLES[name]


def spoken_text(ogg: bytes) -> str | None:
    """The `TRANSCRIPT=` user comment of an Ogg/Opus OpusTags packet (RFC 7845, section 5.2)."""
    start = ogg.find(b"OpusTags")
    if start < 0:
        return None
    at = start + 8
    try:
        (vendor_len,) = struct.unpack_from("<I", ogg, at)
        at += 4 + vendor_len
        (count,) = struct.unpack_from("<I", ogg, at)
        at += 4
        for _ in range(count):
            (size,) = struct.unpack_from("<I", ogg, at)
            comment = ogg[at + 4:at + 4 + size].decode("utf-8", "replace")
            at += 4 + size
            if comment.upper().startswith("TRANSCRIPT="):
                return comment.split("=", 1)[1]
    except struct.error:
        return None
    return None


def _shelf(request: Request) -> MediaShelf:
    return request.app.state.media  # type: ignore[no-any-return]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _graph_error(code: int, message: str, subcode: int | None = None) -> Response:
    answer = graph_error(code, message=message, subcode=subcode)
    content, headers = answer.encode()
    response = Response(content, answer.status)
    response.raw_headers = headers
    return response


async def _keep_upload(request: Request, upload: UploadFile, mime_type: str,
                       about: dict[str, Any]) -> str:
    """A file our side uploaded: shelved (it can be sent by its id) and logged."""
    data = await upload.read()
    shelf = _shelf(request)
    media_id = shelf.shelve(data, mime_type)
    shelf.uploads.append({**about, "id": media_id, "filename": upload.filename,
                          "size": len(data)})
    return media_id


def add_media_routes(app: FastAPI) -> None:
    app.state.media = MediaShelf()

    @app.post("/_sandbox/media")
    async def shelve(request: Request, sample: str | None = None,
                     mime_type: str = "application/octet-stream",
                     expired: bool = False) -> dict[str, Any]:
        data, mime = sample_file(sample) if sample in SAMPLES else (await request.body(), mime_type)
        shelf = _shelf(request)
        media_id = shelf.shelve(data, mime, expired)
        base = str(request.base_url).rstrip("/")
        return {"id": media_id, "mime_type": mime, "size": len(data),
                "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                "url": f"{base}/_sandbox/cdn/{shelf.link(media_id)}"}

    @app.get("/_sandbox/media/uploads")
    async def uploads(request: Request) -> dict[str, Any]:
        shelf = _shelf(request)
        return {"uploads": shelf.uploads, "downloads": shelf.downloads, "misses": shelf.misses}

    @app.get("/_sandbox/cdn/{token}")
    async def cdn(request: Request, token: str) -> Response:
        found = _shelf(request).open(token)
        if found is None:  # Meta's CDN: a signed URL past its expiry
            _shelf(request).misses += 1
            return Response("URL signature expired", 403, media_type="text/plain")
        _shelf(request).downloads += 1
        return Response(found.data, media_type=found.mime_type)

    @app.get("/_sandbox/lookaside/{token}")
    async def lookaside(request: Request, token: str) -> Response:
        if _bearer(request) is None:
            return _graph_error(190, "Invalid OAuth access token.")
        found = _shelf(request).open(token)
        if found is None:
            _shelf(request).misses += 1
            return Response(status_code=404)
        _shelf(request).downloads += 1
        return Response(found.data, media_type=found.mime_type)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        form = await request.form()
        upload, model = form.get("file"), form.get("model")
        if not model or upload is None or isinstance(upload, str):
            return JSONResponse({"error": {
                "message": "you must provide a model parameter and a file",
                "type": "invalid_request_error", "param": None, "code": None}}, 400)
        data = await upload.read()
        text = spoken_text(data) or "(nota de voz sin palabras reconocibles)"
        return JSONResponse({"text": text})

    # Media ids are numeric: other GETs (`/v1/messages`) keep their 405.
    @app.get("/{version}/{media_id:int}")
    async def retrieve_media_url(request: Request, version: str, media_id: int) -> Response:
        if _bearer(request) is None:
            return _graph_error(190, "Invalid OAuth access token.")
        shelf = _shelf(request)
        found = shelf.items.get(str(media_id))
        if found is None:
            return _graph_error(100, f"Unsupported get request. Object with ID '{media_id}' "
                                     "does not exist", subcode=33)
        base = str(request.base_url).rstrip("/")
        token = shelf.link(str(media_id))
        return JSONResponse({
            "messaging_product": "whatsapp", "url": f"{base}/_sandbox/lookaside/{token}",
            "mime_type": found.mime_type,
            "sha256": hashlib.sha256(found.data).hexdigest(),
            "file_size": str(len(found.data)), "id": str(media_id),
        })

    @app.post("/{version}/{account_id}/media")
    async def whatsapp_upload(request: Request, version: str, account_id: str) -> Response:
        if _bearer(request) is None:
            return _graph_error(190, "Invalid OAuth access token.")
        form = await request.form()
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp" or upload is None \
                or isinstance(upload, str) or not form.get("type"):
            return _graph_error(100, "(#100) The parameter messaging_product, file and type "
                                     "are required.")
        media_id = await _keep_upload(request, upload, str(form.get("type")), {
            "platform": "whatsapp", "account_id": account_id, "type": form.get("type")})
        return JSONResponse({"id": media_id})

    @app.post("/{version}/{account_id}/message_attachments")
    async def attachment_upload(request: Request, version: str, account_id: str) -> Response:
        if _bearer(request) is None:
            return _graph_error(190, "Invalid OAuth access token.")
        form = await request.form()
        upload = form.get("filedata")
        try:
            message = json.loads(str(form.get("message") or ""))
            kind = message["attachment"]["type"]
            reusable = message["attachment"]["payload"].get("is_reusable") is True
        except (ValueError, KeyError, TypeError, AttributeError):
            return _graph_error(100, "(#100) param message must be a JSON attachment")
        if upload is None or isinstance(upload, str) or kind not in ("image", "audio", "video",
                                                                     "file"):
            return _graph_error(100, "(#100) filedata and a valid attachment type are required")
        attachment_id = await _keep_upload(
            request, upload, upload.content_type or "application/octet-stream",
            {"platform": "graph", "account_id": account_id, "type": kind, "reusable": reusable})
        return JSONResponse({"attachment_id": attachment_id})
