"""A request id for every HTTP request: taken from the caller's `X-Request-ID` when it is a sane
token (a load balancer's or gateway's), made up otherwise; bound into every log line written
while the request runs and returned in the response's `X-Request-ID` header. Pure ASGI, so that
it costs the webhook hot path next to nothing and also covers streamed responses."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tistis_common.logging import bound

HEADER = b"x-request-id"
_SANE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), b"")
        request_id = given if _SANE.match(given) else uuid.uuid4().hex.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, request_id)]
            await send(message)

        with bound(request_id=request_id.decode()):
            await self.app(scope, receive, send_with_id)
