"""The platforms' door: `GET|POST /api/webhook/{channel}/{tenant_slug}`.

POST, in order: size limit (413), tenant (404), signature over the raw body (401, a stale
TikTok timestamp included), JSON (400), the platform's shape (400), tenant binding of every
account the payload names (403, counted as cross_tenant), then every event published with a
broker confirm, and only then 200. Echoes of our own sends and kinds we do not handle are
acknowledged (200) and counted, never published.

Failure answers follow the platforms' retry semantics: Meta and TikTok retry any non-200 for
hours, so a transient failure (broker down, a confirm refused, the database not answering) is
503 and the retry is stored once downstream (stable event ids). Input that can never succeed is
4xx. An unexpected exception is answered 503 and counted as `error`: retrying is harmless, and a
500 would tell nothing more. No path answers 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from tistis_common import metrics
from tistis_common.broker import Publisher
from tistis_common.events import Channel
from tistis_common.logging import get_logger
from tistis_common.settings import Settings

from .channels.base import ChannelAdapter, Context, MalformedPayload, StaleSignature
from .channels.meta_messaging import FacebookAdapter, InstagramAdapter
from .channels.tiktok import TikTokAdapter
from .channels.whatsapp import WhatsAppAdapter
from .directory import Connection, Directory, Tenant
from .recent import RecentlyConfirmed

log = get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
PATH = "/api/webhook/{channel}/{tenant_slug}"


class WebhookAnswer(BaseModel):
    status: str
    events: int = 0
    detail: str | None = None


def build_adapters(settings: Settings) -> dict[str, ChannelAdapter]:
    adapters: list[ChannelAdapter] = [
        WhatsAppAdapter(), FacebookAdapter(), InstagramAdapter(),
        TikTokAdapter(settings.tiktok_signature_tolerance_seconds),
    ]
    return {a.channel.value: a for a in adapters}


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing as soon as it passes `limit` (a declared length is checked first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _secrets(channel: str, connections: list[Connection], settings: Settings) -> list[str]:
    env = settings.tiktok_client_secret if channel == Channel.TIKTOK else settings.meta_app_secret
    found = [c.app_secret for c in connections if c.app_secret]
    return list(dict.fromkeys([*found, *([env] if env else [])]))


def _our_app_ids(channel: str, connections: list[Connection], settings: Settings) -> frozenset[str]:
    ids = {c.app_id for c in connections if c.app_id}
    if channel != Channel.TIKTOK and settings.meta_app_id:
        ids.add(settings.meta_app_id)
    return frozenset(ids)


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": WebhookAnswer, "description": "Accepted (every event confirmed by the broker), "
          "or acknowledged without events (echo, ignored kinds, duplicate)"},
    400: {"model": WebhookAnswer, "description": "Not JSON, or not the platform's shape"},
    401: {"model": WebhookAnswer, "description": "Missing or invalid signature, stale TikTok timestamp"},
    403: {"model": WebhookAnswer, "description": "An account in the payload is not this tenant's"},
    404: {"model": WebhookAnswer, "description": "Unknown tenant"},
    413: {"model": WebhookAnswer, "description": "Body over 1 MiB"},
    503: {"model": WebhookAnswer, "description": "Broker or database unavailable: retry later"},
}
REQUEST_BODY = {
    "required": True,
    "description": "The platform's webhook JSON, exactly as sent (the signature covers the raw "
                   "bytes): WhatsApp `object: whatsapp_business_account`, Messenger `object: "
                   "page`, Instagram `object: instagram`, TikTok envelope with `content`.",
    "content": {"application/json": {"schema": {"anyOf": [
        {"title": "MetaWebhook", "type": "object", "required": ["object", "entry"], "properties": {
            "object": {"type": "string", "enum": ["whatsapp_business_account", "page", "instagram"]},
            "entry": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "time": {"type": "integer"},
                "changes": {"type": "array", "items": {"type": "object"}},
                "messaging": {"type": "array", "items": {"type": "object"}},
                "standby": {"type": "array", "items": {"type": "object"}},
            }}},
        }},
        {"title": "TikTokWebhook", "type": "object", "required": ["event", "user_openid", "content"],
         "properties": {
            "client_key": {"type": "string"}, "create_time": {"type": "integer"},
            "event": {"type": "string", "enum": ["im_receive_msg", "im_send_msg", "im_mark_read_msg",
                                                 "direct_message.receive"]},
            "user_openid": {"type": "string"},
            "content": {"type": "string", "description": "the event, a JSON string"},
        }},
    ]}}},
}


class WebhookIntake:
    """The POST pipeline and the GET handshake, independent of how the request was routed."""

    def __init__(self, settings: Settings, directory: Directory, publisher: Publisher):
        self.settings = settings
        self.directory = directory
        self.adapters = build_adapters(settings)
        self.recent = RecentlyConfirmed()
        self.publisher = publisher
        self._counters: dict[tuple[str, ...], Any] = {}

    def _count(self, metric: Any, *labels: str) -> Any:
        # Labelled children cached: `.labels()` takes a lock and builds a tuple every call.
        key = (metric._name, *labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metric.labels(*labels)
        return child

    def answer(self, channel: str, outcome: str, status: int, detail: str | None = None,
               tenant: Tenant | None = None, events: int = 0) -> Response:
        self._count(metrics.WEBHOOKS, channel, outcome).inc()
        if tenant is not None:
            self._count(metrics.WEBHOOKS_BY_TENANT, tenant.slug, channel, outcome).inc()
        if status >= 400:
            log.info("webhook.refused", channel=channel, outcome=outcome, status=status,
                     detail=detail, tenant=tenant.slug if tenant else None)
        return JSONResponse({"status": outcome, "events": events, "detail": detail},
                            status_code=status)

    async def verify(self, channel: str, tenant_slug: str, mode: str | None, token: str | None,
                     challenge: str | None) -> Response:
        try:
            tenant = await self.directory.tenant(tenant_slug)
            if tenant is None:
                return self.answer(channel, "unknown_tenant", 404, "unknown tenant")
            tokens = {c.verify_token for c in await self.directory.connections(tenant.id, channel)}
        except Exception as exc:
            log.error("webhook.verify_unavailable", channel=channel, error=repr(exc))
            return self.answer(channel, "unavailable", 503, "try again later")
        if channel == Channel.WHATSAPP and self.settings.whatsapp_verify_token:
            tokens.add(self.settings.whatsapp_verify_token)
        tokens.discard(None)
        if mode == "subscribe" and token and challenge is not None and token in tokens:
            self._count(metrics.WEBHOOKS, channel, "verified").inc()
            return PlainTextResponse(challenge)
        return self.answer(channel, "verify_failed", 403, "verification failed", tenant)

    async def receive(self, channel: str, tenant_slug: str, request: Request) -> Response:
        """A platform's webhook: verified, normalized, published with broker confirms."""
        started = time.perf_counter()
        try:
            return await self._receive(channel, tenant_slug, request)
        except Exception as exc:  # a bug of ours: count it, let the platform retry, never 500
            log.exception("webhook.error", channel=channel, error=repr(exc))
            return self.answer(channel, "error", 503, "try again later")
        finally:
            self._count(metrics.WEBHOOK_SECONDS, channel).observe(time.perf_counter() - started)

    async def _receive(self, channel: str, tenant_slug: str, request: Request) -> Response:
        answer, settings = self.answer, self.settings
        adapter = self.adapters[channel]
        try:
            body = await read_limited(request)
        except BodyTooLarge:
            return answer(channel, "too_large", 413, "body over 1 MiB")
        try:
            tenant = await self.directory.tenant(tenant_slug)
            if tenant is None:
                return answer(channel, "unknown_tenant", 404, "unknown tenant")
            connections = await self.directory.connections(tenant.id, channel)
        except Exception as exc:  # database down: transient
            log.error("webhook.directory_unavailable", channel=channel, error=repr(exc))
            return answer(channel, "unavailable", 503, "try again later")
        try:
            signed = any(adapter.verify_signature(request.headers, body, secret)
                         for secret in _secrets(channel, connections, settings))
        except StaleSignature:
            return answer(channel, "bad_signature", 401, "stale signature timestamp", tenant)
        if not signed:
            return answer(channel, "bad_signature", 401, "invalid signature", tenant)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return answer(channel, "malformed", 400, "body is not JSON", tenant)
        ctx = Context(tenant.id, _our_app_ids(channel, connections, settings))
        try:
            normalized = adapter.normalize(payload, ctx)
        except MalformedPayload as exc:
            return answer(channel, "malformed", 400, f"not a {channel} webhook: {exc}"[:300], tenant)
        foreign = normalized.account_ids - {c.platform_account_id for c in connections}
        if foreign:
            log.warning("webhook.cross_tenant", channel=channel, tenant=tenant.slug,
                        accounts=sorted(foreign)[:10])
            return answer(channel, "cross_tenant", 403, "account does not belong to this tenant",
                          tenant)
        if normalized.template_statuses:
            try:
                await self.directory.set_template_statuses(tenant.id, normalized.template_statuses)
            except Exception as exc:  # database down: transient, Meta retries
                log.error("webhook.template_status_failed", channel=channel, error=repr(exc))
                return answer(channel, "unavailable", 503, "try again later", tenant)
            self._count(metrics.WEBHOOK_EVENTS, channel, "template_status").inc(
                len(normalized.template_statuses))
        for kind in normalized.ignored:
            self._count(metrics.WEBHOOK_EVENTS, channel, "ignored").inc()
            log.debug("webhook.ignored_kind", channel=channel, kind=kind)
        if normalized.echoes:
            self._count(metrics.WEBHOOK_EVENTS, channel, "echo").inc(normalized.echoes)
        events = normalized.events
        if not events:
            outcome = ("accepted" if normalized.template_statuses
                       else "echo" if normalized.echoes and not normalized.ignored else "ignored")
            return answer(channel, outcome, 200, None, tenant)
        ids = [e.event_id for e in events]
        if self.recent.all_seen(ids):
            return answer(channel, "duplicate", 200, None, tenant, len(events))
        confirm_started = time.perf_counter()
        try:
            await self.publisher.publish_all(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker down, confirm refused, timeout: let the platform retry
            log.error("webhook.publish_failed", channel=channel, tenant=tenant.slug, error=repr(exc))
            return answer(channel, "unavailable", 503, "try again later", tenant)
        self._count(metrics.WEBHOOK_CONFIRM_SECONDS, channel).observe(
            time.perf_counter() - confirm_started)
        self.recent.add(ids)
        for event in events:
            self._count(metrics.WEBHOOK_EVENTS, channel, event.type).inc()  # type: ignore[attr-defined]
        return answer(channel, "accepted", 200, None, tenant, len(events))


def webhook_router(intake: WebhookIntake) -> APIRouter:
    """The routes as FastAPI serves and documents them (OpenAPI). In the running service the
    POST is usually taken earlier by `fastpath.WebhookFastPath`, which calls the same intake."""
    router = APIRouter(tags=["webhooks"])

    @router.get(PATH, response_model=None, responses={
        200: {"description": "hub.challenge, echoed as plain text",
              "content": {"text/plain": {"schema": {"type": "string"}}}},
        403: {"model": WebhookAnswer, "description": "Wrong mode or verify token"},
        404: {"model": WebhookAnswer, "description": "Unknown tenant"},
        503: {"model": WebhookAnswer, "description": "Database unavailable"},
    })
    async def verify(
        channel: Channel,
        tenant_slug: str,
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """Meta's subscription handshake: echo hub.challenge when the verify token matches the
        tenant's connection (or WHATSAPP_VERIFY_TOKEN for WhatsApp)."""
        return await intake.verify(channel.value, tenant_slug, mode, token, challenge)

    @router.post(PATH, response_model=WebhookAnswer, responses=RESPONSES,
                 openapi_extra={"requestBody": REQUEST_BODY})
    async def receive(channel: Channel, tenant_slug: str, request: Request) -> Response:
        """A platform's webhook: verified, normalized, published with broker confirms, then 200."""
        return await intake.receive(channel.value, tenant_slug, request)

    return router
