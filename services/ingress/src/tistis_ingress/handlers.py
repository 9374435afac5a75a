"""The webhook's entry points: `GET|POST /api/webhook/{channel}` (the app's one callback URL, for
a platform app shared by every clinic) and `/api/webhook/{channel}/{tenant_slug}` (the guide's
per-clinic URL, e.g. for a clinic bringing its own app). The decisions are in `service.py`.

A webhook POST comes in by one of two doors, and both call `receive_webhook` below:
1. `WebhookFastPath`, a pure ASGI middleware, serves every POST of a known channel in the
   running service: it is the hot path (every patient message of every clinic), and FastAPI's
   dependency solving, exception and exit-stack middlewares and route matching cost about as
   much CPU as the rest of the request.
2. `webhook_router`, the FastAPI routes: they document the webhook (OpenAPI), serve the GET
   handshake, and serve only the POSTs door 1 lets through (in the running service, none of a
   known channel).
Change what a POST does in `receive_webhook` or the service, never in one door only.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send
from tistis_common.events import Channel, Event, TemplateStatusChanged, WebhookItemsHeld
from tistis_common.logging import get_logger

from .api.templates import apply_template_status
from .deps import Deps
from .service import Answer, WebhookIntake

log = get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
PATH = "/api/webhook/{channel}/{tenant_slug}"
APP_PATH = "/api/webhook/{channel}"
PREFIX = "/api/webhook/"


class WebhookAnswer(BaseModel):
    status: str
    events: int = 0
    detail: str | None = None


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


async def receive_webhook(intake: WebhookIntake, channel: str, tenant_slug: str | None,
                          request: Request) -> Response:
    """A webhook POST, whichever door it came in by: the body read within its limit, then the
    service's answer. An exception of ours is counted and answered 503 (the platform retries),
    never 500."""
    started = time.perf_counter()
    try:
        try:
            body = await read_limited(request)
        except BodyTooLarge:
            return _response(intake.answer(channel, "too_large", 413, "body over 1 MiB"))
        return _response(await intake.receive(channel, tenant_slug, request.headers, body))
    except Exception as exc:  # a bug of ours: count it, let the platform retry, never 500
        log.exception("webhook.error", channel=channel, error=repr(exc))
        return _response(intake.answer(channel, "error", 503, "try again later"))
    finally:
        intake.observe_duration(channel, started)


def _response(answer: Answer) -> Response:
    if answer.challenge is not None:
        return PlainTextResponse(answer.challenge)
    return JSONResponse({"status": answer.outcome, "events": answer.events,
                         "detail": answer.detail}, status_code=answer.status)


class WebhookFastPath:
    """Door 1 (see the module's docstring): takes the POSTs whose channel it knows before
    FastAPI; anything else (an unknown channel, other routes) goes on to FastAPI."""

    def __init__(self, app: ASGIApp, intake: WebhookIntake):
        self.app = app
        self.intake = intake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                channel, _, slug = path[len(PREFIX):].partition("/")
                if "/" not in slug and channel in self.intake.adapters:
                    response = await receive_webhook(self.intake, channel, slug or None,
                                                     Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def handle_held_items(event: WebhookItemsHeld, intake: WebhookIntake) -> list[Event]:
    """The consumer of `ingress.webhook-items`: held items an engineer replayed (`tistis dlq
    replay ingress.webhook-items.dlq`), read again by the service."""
    return await intake.replay(event)


async def handle_template_status(event: TemplateStatusChanged, deps: Deps) -> list[Event]:
    """The consumer of `ingress.template-status`: what the webhook learnt of a template."""
    await apply_template_status(event, deps.pool)
    return []


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": WebhookAnswer, "description": "Accepted (every event, and every unreadable "
          "item kept for an engineer, confirmed by the broker), or acknowledged without events "
          "(echo, ignored kinds, accounts no tenant owns, duplicate)"},
    400: {"model": WebhookAnswer, "description": "Not JSON, or not the platform's shape"},
    401: {"model": WebhookAnswer, "description": "Missing or invalid signature, stale TikTok timestamp"},
    403: {"model": WebhookAnswer, "description": "An account the signature may not address"},
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



def webhook_router(intake: WebhookIntake) -> APIRouter:
    """Door 2 (see the module's docstring): the routes as FastAPI documents them (OpenAPI). The
    GETs are served here; the POSTs only when door 1 let them through (never in the running
    service for the channels it knows), and both doors call `receive_webhook`."""
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
        return _response(await intake.verify(channel.value, tenant_slug, mode, token, challenge))

    # In the running service this POST is served by door 1, `WebhookFastPath`, not by this route.
    @router.post(PATH, response_model=WebhookAnswer, responses=RESPONSES,
                 openapi_extra={"requestBody": REQUEST_BODY})
    async def receive(channel: Channel, tenant_slug: str, request: Request) -> Response:
        """A platform's webhook: verified, each item routed to the tenant owning its account,
        normalized, published with broker confirms, then 200."""
        return await receive_webhook(intake, channel.value, tenant_slug, request)

    @router.get(APP_PATH, response_model=None, responses={
        200: {"description": "hub.challenge, echoed as plain text",
              "content": {"text/plain": {"schema": {"type": "string"}}}},
        403: {"model": WebhookAnswer, "description": "Wrong mode or verify token"},
    })
    async def verify_app(
        channel: Channel,
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """Meta's subscription handshake for the app's callback URL: echo hub.challenge when
        the verify token is WEBHOOK_VERIFY_TOKEN (or WHATSAPP_VERIFY_TOKEN for WhatsApp)."""
        return _response(await intake.verify(channel.value, None, mode, token, challenge))

    # In the running service this POST is served by door 1, `WebhookFastPath`, not by this route.
    @router.post(APP_PATH, response_model=WebhookAnswer, responses={
        k: v for k, v in RESPONSES.items() if k != 404},
        openapi_extra={"requestBody": REQUEST_BODY})
    async def receive_app(channel: Channel, request: Request) -> Response:
        """The app's one callback URL (one platform app for every clinic): each item is routed
        to the tenant owning its account id, then as the per-clinic URL."""
        return await receive_webhook(intake, channel.value, None, request)

    return router
