"""A request body that does not arrive in time is answered 408 and the connection closed.

uvicorn times out idle keep-alive connections, not a request whose headers came and whose body
trickles (or stops): a half-sent upload would hold its connection and its handler forever, and
a few hundred of them the service. This wraps the whole ASGI app (webhooks, operator API,
probes), so every route of every service gets the same rule: the body must be complete within
`seconds` of the request's start. Only requests that announce a body are timed, and the clock
stops when the body is complete or the response has started (a slow handler is not a slow
client)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tistis_common import metrics
from tistis_common.logging import get_logger

log = get_logger(__name__)

_TIMEOUT_BODY = b'{"type":"about:blank","title":"Request Timeout","status":408,' \
                b'"detail":"the request body did not arrive in time"}'


def _announces_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


class BodyReadTimeout:
    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0 or not _announces_body(scope):
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        expired = False
        started = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.seconds, expire)

        async def timed_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                timer.cancel()  # complete (or the client left): nothing more to wait for
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                timer.cancel()
            await send(message)

        try:
            await self.app(scope, timed_receive, watched_send)
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            metrics.HTTP_BODY_TIMEOUTS.inc()
            log.info("http.body_timeout", path=scope["path"][:200], seconds=self.seconds)
            if not started:
                await send({"type": "http.response.start", "status": 408, "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(_TIMEOUT_BODY)).encode()),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": _TIMEOUT_BODY})
        finally:
            timer.cancel()
