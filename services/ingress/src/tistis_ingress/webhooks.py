"""The platforms' door: `GET|POST /api/webhook/{channel}/{tenant_slug}`.

POST: size limit, tenant, signature over the raw body, JSON, the platform's shape, tenant binding
of the accounts named in it, then every event published with a broker confirm, and only then 200.
A broker that is down or a confirm that fails gives 503, so that the platform retries.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from tistis_common import metrics
from tistis_common.broker import Publisher
from tistis_common.events import Channel
from tistis_common.logging import get_logger
from tistis_common.settings import Settings

from .channels.base import ChannelAdapter, MalformedPayload
from .channels.whatsapp import WhatsAppAdapter
from .directory import Connection, Directory

log = get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
ADAPTERS: dict[str, ChannelAdapter] = {a.channel.value: a for a in (WhatsAppAdapter(),)}


def _answer(channel: str, outcome: str, status: int, detail: str) -> Response:
    metrics.WEBHOOKS.labels(channel, outcome).inc()
    if status >= 400:
        log.info("webhook.refused", channel=channel, outcome=outcome, status=status, detail=detail)
    return JSONResponse({"status": outcome, "detail": detail}, status_code=status)


def _secrets(channel: str, connections: list[Connection], settings: Settings) -> list[str]:
    env = settings.tiktok_client_secret if channel == Channel.TIKTOK else settings.meta_app_secret
    found = [c.app_secret for c in connections if c.app_secret]
    return list(dict.fromkeys([*found, *([env] if env else [])]))


def webhook_router(settings: Settings, directory: Directory, publisher: Publisher) -> APIRouter:
    router = APIRouter()

    @router.get("/api/webhook/{channel}/{tenant_slug}", response_class=PlainTextResponse)
    async def verify(
        channel: str,
        tenant_slug: str,
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """Meta's subscription handshake: echo hub.challenge when the verify token matches."""
        if channel not in ADAPTERS:
            return _answer(channel, "unknown_channel", 404, "unknown channel")
        tenant = await directory.tenant(tenant_slug)
        if tenant is None:
            return _answer(channel, "unknown_tenant", 404, "unknown tenant")
        tokens = {c.verify_token for c in await directory.connections(tenant.id, channel)}
        if channel == Channel.WHATSAPP and settings.whatsapp_verify_token:
            tokens.add(settings.whatsapp_verify_token)
        tokens.discard(None)
        if mode == "subscribe" and token and challenge is not None and token in tokens:
            metrics.WEBHOOKS.labels(channel, "verified").inc()
            return PlainTextResponse(challenge)
        return _answer(channel, "verify_failed", 403, "verification failed")

    @router.post("/api/webhook/{channel}/{tenant_slug}")
    async def receive(channel: str, tenant_slug: str, request: Request) -> Response:
        started = time.perf_counter()
        try:
            return await _receive(channel, tenant_slug, request)
        finally:
            if channel in ADAPTERS:
                metrics.WEBHOOK_SECONDS.labels(channel).observe(time.perf_counter() - started)

    async def _receive(channel: str, tenant_slug: str, request: Request) -> Response:
        adapter = ADAPTERS.get(channel)
        if adapter is None:
            return _answer("unknown", "unknown_channel", 404, "unknown channel")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _answer(channel, "too_large", 413, "body over 1 MiB")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _answer(channel, "too_large", 413, "body over 1 MiB")
        tenant = await directory.tenant(tenant_slug)
        if tenant is None:
            return _answer(channel, "unknown_tenant", 404, "unknown tenant")
        connections = await directory.connections(tenant.id, channel)
        secrets = _secrets(channel, connections, settings)
        if not any(adapter.verify_signature(request.headers, body, s) for s in secrets):
            return _answer(channel, "bad_signature", 401, "invalid signature")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return _answer(channel, "malformed", 400, "body is not JSON")
        try:
            normalized = adapter.normalize(payload, tenant.id)
        except MalformedPayload as exc:
            return _answer(channel, "malformed", 400, f"not a {channel} webhook: {exc}")
        foreign = normalized.account_ids - {c.platform_account_id for c in connections}
        if foreign:
            log.warning("webhook.cross_tenant", channel=channel, tenant=tenant.slug,
                        accounts=sorted(foreign))
            return _answer(channel, "cross_tenant", 403, "account does not belong to this tenant")
        for _kind in normalized.ignored:
            metrics.WEBHOOK_EVENTS.labels(channel, "ignored").inc()
        try:
            await publisher.publish_all(normalized.events)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # broker down, confirm refused, timeout: let the platform retry
            log.error("webhook.publish_failed", channel=channel, tenant=tenant.slug, error=repr(exc))
            return _answer(channel, "unavailable", 503, "try again later")
        for event in normalized.events:
            metrics.WEBHOOK_EVENTS.labels(channel, event.type).inc()  # type: ignore[attr-defined]
        outcome = "accepted" if normalized.events else "ignored"
        metrics.WEBHOOKS.labels(channel, outcome).inc()
        log.info("webhook.accepted", channel=channel, tenant=tenant.slug,
                 events=len(normalized.events), ignored=len(normalized.ignored))
        return JSONResponse({"status": outcome, "events": len(normalized.events)})

    return router
