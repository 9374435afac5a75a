"""The webhook POST without FastAPI's per-request machinery.

`POST /api/webhook/{channel}[/{tenant_slug}]` is the hot path (every patient message of every
clinic). The FastAPI route documents it and would serve it, but its dependency solving,
exception and exit-stack middlewares and route matching cost about as much CPU as the rest of
the request. This pure ASGI middleware takes the POSTs whose channel it knows and hands them to
the same `WebhookIntake`; anything else (an unknown channel, other routes) goes on to FastAPI.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .webhooks import WebhookIntake

PREFIX = "/api/webhook/"


class WebhookFastPath:
    def __init__(self, app: ASGIApp, intake: WebhookIntake):
        self.app = app
        self.intake = intake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                channel, _, slug = path[len(PREFIX):].partition("/")
                if "/" not in slug and channel in self.intake.adapters:
                    response = await self.intake.receive(channel, slug or None,
                                                         Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
