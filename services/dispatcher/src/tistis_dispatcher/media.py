"""The media consumer: a patient's photo, voice note or document, fetched with the tenant's token
and kept, before anyone else sees the message.

The ingress publishes a message whose file is not fetched yet as `media.received.<channel>`
(`tistis_common.events.awaits_media`). Here, per platform:
- WhatsApp: `GET /{version}/{media-id}` (bearer token) answers a download URL that lives about
  five minutes, then `GET <url>` with the same token gives the bytes. Each attempt asks for a
  fresh URL, so a URL that expired meanwhile is simply asked for again.
- Messenger / Instagram: the webhook's attachment `payload.url` is a CDN link that expires; it
  is all there is, so an expired link fails for good once its prompt retries are spent.
- TikTok: the image `url` when the webhook has one; a bare media id has no download API.
Then: size and type checked against the platform's limits, kept in the media store
(content-addressed), a voice note transcribed, and the message forwarded as
`message.received.<channel>` with the file's address (and the transcript as its text).

Failures are retried in place (`media_fetch_attempts`, backoff): the URLs are short-lived, so a
retry minutes later would only find them expired. Then the fetch is dead-lettered with its
reason, and the message is forwarded anyway (`media.status` "failed"): it is never lost
because its file could not be fetched. A redelivery finds what was fetched and fetches nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from tistis_common import metrics
from tistis_common.broker import PermanentError
from tistis_common.db import tenant_session, tenant_tx
from tistis_common.events import Event, InboundMessage, MediaRef
from tistis_common.logging import get_logger
from tistis_common.storage import media_key, sha256_hex

from tistis_dispatcher import media_repository as repo
from tistis_dispatcher.platform import _json, classify_graph
from tistis_dispatcher.transcription import TranscriptionFailed

if TYPE_CHECKING:
    from tistis_dispatcher.deps import Deps

log = get_logger(__name__)

MB = 1024 * 1024
# Largest file per platform and kind. WhatsApp: its supported media types (image 5 MB, audio and
# video 16 MB, document 100 MB, sticker 500 KB); Messenger/Instagram: 25 MB for any attachment;
# TikTok: images only, as the guide has it (a generous 20 MB).
LIMITS: dict[str, dict[str, int]] = {
    "whatsapp": {"image": 5 * MB, "audio": 16 * MB, "video": 16 * MB, "document": 100 * MB,
                 "sticker": 500 * 1024},
    "facebook": dict.fromkeys(("image", "audio", "video", "document", "sticker"), 25 * MB),
    "instagram": dict.fromkeys(("image", "audio", "video", "document", "sticker"), 25 * MB),
    "tiktok": {"image": 20 * MB},
}
# Which content types a kind may be (a "photo" that is an executable is refused).
TYPES: dict[str, tuple[str, ...]] = {
    "image": ("image/jpeg", "image/png", "image/webp", "image/gif"),
    "sticker": ("image/webp", "image/png", "image/gif"),
    "audio": ("audio/",),
    "video": ("video/",),
    "document": ("application/pdf", "application/msword", "application/vnd.", "text/plain",
                 "image/"),
}


class FetchFailed(Exception):
    """This attempt did not get the file (expired URL, platform error); retried in place."""


class FetchRefused(Exception):
    """The file cannot be kept whatever we try (too large, wrong type, nothing to fetch)."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    mime_type: str


async def keep_media(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    """The message's file fetched and kept, and the message to forward with it (a redelivery
    forwards what the first delivery kept)."""
    assert event.media is not None
    channel = event.channel.value
    async with tenant_session(deps.pool, event.tenant_id) as conn:
        earlier = await repo.fetched(conn, channel, event.platform_message_id)
        account = await repo.connection_for(conn, channel, event.platform_account_id)
    if earlier is not None and earlier.status == "stored" and earlier.sha256:
        metrics.MEDIA_FETCHES.labels(channel, "duplicate").inc()
        log.info("media.duplicate", sha256=earlier.sha256)
        return [_forward(event, _stored_ref(event.media, earlier.sha256,
                                            earlier.size_bytes, earlier.mime_type,
                                            earlier.transcript))]
    try:
        fetched = await _fetch_promptly(event, account, deps)
        await _put_promptly(event, fetched, deps)
    except (FetchFailed, FetchRefused) as exc:
        return await _failed(event, exc, deps)
    return [await _keep(event, fetched, deps)]


async def _fetch_promptly(event: InboundMessage, account: repo.MediaConnection | None,
                          deps: Deps) -> Fetched:
    s = deps.settings
    for attempt in range(s.media_fetch_attempts):
        try:
            fetched = await _fetch(event, account, deps)
            _check(event.channel.value, event.kind, fetched)
            return fetched
        except FetchFailed as exc:
            if attempt + 1 >= s.media_fetch_attempts:
                raise
            metrics.MEDIA_FETCHES.labels(event.channel.value, "retry").inc()
            log.warning("media.fetch_retry", attempt=attempt + 1, error=str(exc)[:300])
            await asyncio.sleep(s.media_fetch_backoff_seconds * 2**attempt)
    raise FetchFailed("no attempt made")  # media_fetch_attempts < 1


def _token(event: InboundMessage, account: repo.MediaConnection | None, deps: Deps) -> str | None:
    # Stored encrypted (tistis_common.secrets); opened here, at its one use.
    token = deps.secrets.open(account.access_token) if account is not None else None
    if not token and event.channel == "whatsapp":
        token = deps.settings.whatsapp_access_token
    return token


async def _fetch(event: InboundMessage, account: repo.MediaConnection | None,
                 deps: Deps) -> Fetched:
    media = event.media
    assert media is not None
    token = _token(event, account, deps)
    if event.channel == "whatsapp":
        if not media.id:
            raise FetchRefused("WhatsApp media without an id")
        if not token:
            raise FetchRefused("no WhatsApp access token for this tenant")
        version = ((account.settings or {}) if account else {}).get("api_version") \
            or deps.settings.graph_api_version
        info = await _get(deps.platform.http, f"{deps.settings.graph_api_base_url.rstrip('/')}/"
                          f"{version}/{media.id}", token, graph=True)
        about = _json(info)
        url, size = about.get("url"), about.get("file_size")
        if not isinstance(url, str):
            raise FetchFailed("media URL missing from the answer")
        if size is not None and str(size).isdigit():
            _check_size(event.channel.value, event.kind, int(size))
        answer = await _get(deps.platform.http, url, token, graph=False)
        return Fetched(answer.content, str(about.get("mime_type") or _mime(answer, media)))
    if not media.url:
        raise FetchRefused(f"{event.channel.value} media without a download URL")
    # Messenger / Instagram CDN links and TikTok image URLs carry their own authorization.
    answer = await _get(deps.platform.http, media.url, None, graph=False)
    return Fetched(answer.content, _mime(answer, media))


async def _get(http: httpx.AsyncClient, url: str, token: str | None, *, graph: bool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = await http.get(url, headers=headers, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"transport: {type(exc).__name__}") from exc
    if answer.status_code >= 300:
        if graph:
            error = classify_graph(answer)
            raise FetchFailed(f"Graph {error.code}: {error.title}")
        raise FetchFailed(f"HTTP {answer.status_code} from the media URL (expired?)")
    return answer


def _mime(answer: httpx.Response, media: MediaRef) -> str:
    header = answer.headers.get("content-type", "").split(";")[0].strip()
    return media.mime_type or header or "application/octet-stream"


def _check_size(channel: str, kind: str, size: int) -> None:
    limit = LIMITS.get(channel, {}).get(kind)
    if limit is None:
        raise FetchRefused(f"{kind} files are not kept for {channel}")
    if size > limit:
        raise FetchRefused(f"{kind} of {size} bytes is over the {channel} limit of {limit}")


def _check(channel: str, kind: str, fetched: Fetched) -> None:
    _check_size(channel, kind, len(fetched.data))
    mime = _plain(fetched.mime_type)
    if not mime.startswith(TYPES.get(kind, ("",))):
        raise FetchRefused(f"{kind} of type {mime} is not accepted")


async def _put_promptly(event: InboundMessage, fetched: Fetched, deps: Deps) -> None:
    """Into the media store (the same bytes again: the same object), retried in place like the
    fetch: a store that stays down fails this file, not the message."""
    key = media_key(event.tenant_id, sha256_hex(fetched.data))
    s = deps.settings
    for attempt in range(max(1, s.media_fetch_attempts)):
        try:
            await deps.store.put(key, fetched.data, _plain(fetched.mime_type))
            return
        except Exception as exc:
            if attempt + 1 >= s.media_fetch_attempts:
                raise FetchFailed(f"media store: {type(exc).__name__}: {exc}") from exc
            log.warning("media.store_retry", attempt=attempt + 1, error=str(exc)[:300])
            await asyncio.sleep(s.media_fetch_backoff_seconds * 2**attempt)


def _plain(mime_type: str) -> str:
    return mime_type.split(";")[0].strip().lower()


async def _keep(event: InboundMessage, fetched: Fetched, deps: Deps) -> InboundMessage:
    """The file's rows (it is in the store already), the voice note's transcript, and the
    message forwarded with the file's address."""
    assert event.media is not None
    sha = sha256_hex(fetched.data)
    key = media_key(event.tenant_id, sha)
    mime = _plain(fetched.mime_type)
    transcript = None
    if event.kind == "audio":
        transcript = await _transcribe(fetched, mime, deps)
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        file_id = await repo.keep_file(conn, event.tenant_id, sha, key, mime, len(fetched.data),
                                       event.media.filename)
        await repo.record_fetch(conn, event.tenant_id, event.channel.value,
                                event.platform_message_id, event.platform_user_id, file_id,
                                "stored", None, transcript)
    metrics.MEDIA_FETCHES.labels(event.channel.value, "stored").inc()
    log.info("media.stored", sha256=sha, size=len(fetched.data), mime_type=mime,
             transcribed=transcript is not None)
    return _forward(event, _stored_ref(event.media, sha, len(fetched.data), mime, transcript))


async def _transcribe(fetched: Fetched, mime: str, deps: Deps) -> str | None:
    if deps.transcriber is None:
        metrics.MEDIA_TRANSCRIPTIONS.labels("unavailable").inc()
        return None
    try:
        text = await deps.transcriber.transcribe(fetched.data, mime)
    except TranscriptionFailed as exc:
        # Kept without text: the patient is asked to write and staff see the note flagged.
        metrics.MEDIA_TRANSCRIPTIONS.labels("failed").inc()
        log.warning("media.transcription_failed", error=str(exc)[:300])
        return None
    metrics.MEDIA_TRANSCRIPTIONS.labels("ok").inc()
    return text.strip() or None


def _stored_ref(media: MediaRef, sha: str, size: int | None, mime: str | None,
                transcript: str | None) -> MediaRef:
    # The platform's URL is dropped: it expires, and our copy is what counts from here.
    return media.model_copy(update={"status": "stored", "sha256": sha, "size": size,
                                    "mime_type": mime, "transcript": transcript, "url": None})


def _forward(event: InboundMessage, media: MediaRef) -> InboundMessage:
    text = event.text
    if not text and media.transcript:
        text = media.transcript  # what the patient said is what the AI, rules and scorer read
    return event.model_copy(update={"media": media, "text": text})


async def _failed(event: InboundMessage, exc: Exception, deps: Deps) -> Sequence[Event]:
    assert event.media is not None
    reason = f"{'refused' if isinstance(exc, FetchRefused) else 'failed'}: {exc}"
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        await repo.record_fetch(conn, event.tenant_id, event.channel.value,
                                event.platform_message_id, event.platform_user_id, None,
                                "failed", reason, None)
    metrics.MEDIA_FETCHES.labels(event.channel.value,
                                 "refused" if isinstance(exc, FetchRefused) else "failed").inc()
    log.error("media.fetch_failed", error=reason[:300])
    forwarded = _forward(event, event.media.model_copy(update={"status": "failed",
                                                               "error": reason[:500]}))
    # The message goes on without its file; the fetch waits in the DLQ with its reason (a replay
    # tries again, and forwards the message once more: the responder stores it once).
    raise PermanentError(f"media not fetched: {reason}", publish=[forwarded])
