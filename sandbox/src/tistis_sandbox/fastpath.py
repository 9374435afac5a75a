"""The fake platforms' POSTs without FastAPI's per-request machinery.

A benchmark of the whole platform sends two requests here per patient message (one model call,
one platform send). Through FastAPI each cost more in routing, middlewares, dependency solving
and Request/Response objects than in the fake itself. `PlatformFastPath` sits in front of the
app, answers those POSTs from the raw ASGI scope, and passes everything else (the `/_sandbox/`
controls, other methods, paths it does not know) on to FastAPI. FastAPI still declares the same
routes, answered by the same `exchange`, so routing precedence and 405s stay as they were.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tistis_sandbox import anthropic, graph, tiktok, whatsapp
from tistis_sandbox.meta import graph_error
from tistis_sandbox.recorder import Recorder
from tistis_sandbox.wire import Answer, Call

_EXACT = {"/v1/messages": "anthropic", "/v1/messages/count_tokens": "count_tokens"}
_TIKTOK_TAIL = ["business", "message", "send", ""]
_TIKTOK_REFRESH_TAIL = ["tt_user", "oauth2", "refresh_token", ""]


def route_of(path: str) -> str | None:
    """Which fake serves a POST to `path`, matched as the FastAPI routes in app.py match it."""
    exact = _EXACT.get(path)
    if exact is not None:
        return exact
    parts = path.split("/")
    # /{version}/{account_id}/messages; the FastAPI controls take /_sandbox/... first.
    if len(parts) == 4 and parts[3] == "messages" and parts[1] and parts[2]:
        return "graph" if parts[1] != "_sandbox" else None
    # /open_api/{version}/business/message/send/
    if len(parts) == 7 and parts[1] == "open_api" and parts[2] and parts[3:] == _TIKTOK_TAIL:
        return "tiktok"
    # /open_api/{version}/tt_user/oauth2/refresh_token/
    if (len(parts) == 7 and parts[1] == "open_api" and parts[2]
            and parts[3:] == _TIKTOK_REFRESH_TAIL):
        return "tiktok_refresh"
    return None


async def exchange(route: str, recorder: Recorder, scope: Scope,
                   raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, raw headers and body of the answer to one POST to a fake."""
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        answer = _not_json(route)
        content, headers = answer.encode()
        return answer.status, headers, content
    call = Call.from_scope(scope, raw, body)
    if route == "anthropic":
        answer = await anthropic.handle(recorder, call)
    elif route == "count_tokens":
        answer = anthropic.count_tokens(body)
    elif route == "tiktok":
        answer = await tiktok.handle(recorder, call)
    elif route == "tiktok_refresh":
        answer = await tiktok.refresh(recorder, call)
    elif route == "instagram_refresh":
        answer = await graph.refresh_instagram(recorder, call)
    elif isinstance(body, dict) and ("messaging_product" in body
                                     or ("to" in body and "recipient" not in body)):
        # WhatsApp and Messenger/Instagram share the Graph path; the body tells them apart.
        answer = await whatsapp.handle(recorder, call, phone_number_id=scope["path"].split("/")[2])
    else:
        answer = await graph.handle(recorder, call)
    content, headers = answer.encode()
    return answer.status, headers, content


def _not_json(route: str) -> Answer:
    """Each fake's answer to a body that is not JSON; nothing is recorded for it."""
    if route in ("tiktok", "tiktok_refresh"):
        return Answer(200, tiktok.envelope(tiktok.INVALID_PARAMS, "Invalid JSON body"))
    if route == "graph":
        return graph_error(100, message="(#100) Request body is not valid JSON")
    return anthropic.error(400, "Request body is not valid JSON")


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class PlatformFastPath:
    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = route_of(scope["path"])
            if route is not None:
                raw = await read_body(receive)
                if raw is None:
                    return
                status, headers, content = await exchange(route, self.recorder, scope, raw)
                await send({"type": "http.response.start", "status": status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": content})
                return
        await self.app(scope, receive, send)
