"""The sandbox as one FastAPI app: the four fake platforms plus `/_sandbox/` controls.

WhatsApp Cloud API and the Messenger/Instagram Send API live on the same Graph host and the
same path shape (`/{version}/{id}/messages`), exactly as in production where one
`GRAPH_API_BASE_URL` serves both; the body tells them apart (`messaging_product`).
The platforms' POSTs are normally answered by `fastpath.PlatformFastPath` before FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from tistis_sandbox.callbacks import Callback
from tistis_sandbox.fastpath import PlatformFastPath, exchange
from tistis_sandbox.mediahost import add_media_routes
from tistis_sandbox.recorder import TARGETS, Fault, Recorder, Step
from tistis_sandbox.templates import add_template_routes

_NOT_JSON = object()


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return _NOT_JSON


def _recorder(request: Request) -> Recorder:
    return request.app.state.recorder  # type: ignore[no-any-return]


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise HTTPException(404, f"unknown target {target!r}; one of {', '.join(TARGETS)}")


def _platform_route(route: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status, headers, content = await exchange(route, _recorder(request), request.scope,
                                                  await request.body())
        response = Response(content, status)
        response.raw_headers = headers  # already complete, as the fast path sends them
        return response

    return endpoint


def _add_platform_routes(app: FastAPI) -> None:
    """Declared for routing (the controls win, other methods get 405) and as a fallback: the
    POSTs themselves normally never get here, `PlatformFastPath` answers them."""
    for path, route in (
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "count_tokens"),
        ("/open_api/{version}/business/message/send/", "tiktok"),
        ("/{version}/{account_id}/messages", "graph"),
        ("/open_api/{version}/tt_user/oauth2/refresh_token/", "tiktok_refresh"),
    ):
        app.add_api_route(path, _platform_route(route), methods=["POST"])
    # Instagram Login's token refresh is a GET (graph.instagram.com), so FastAPI serves it.
    app.add_api_route("/refresh_access_token", _platform_route("instagram_refresh"),
                      methods=["GET"])


def _add_control_routes(app: FastAPI) -> None:
    @app.post("/_sandbox/script/{target}")
    async def script(request: Request, target: str) -> dict[str, Any]:
        _check_target(target)
        raw = await _json_body(request)
        if isinstance(raw, dict) and "steps" in raw:
            raw = raw["steps"]
        items = raw if isinstance(raw, list) else [raw]
        try:
            steps = [Step.parse(item) for item in items]
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        rec = _recorder(request)
        rec.queue(target, steps)
        return {"target": target, "queued": len(steps), "pending": len(rec.scripts[target])}

    @app.post("/_sandbox/faults/{target}")
    async def faults(request: Request, target: str) -> dict[str, Any]:
        _check_target(target)
        raw = await _json_body(request)
        try:
            fault = Fault(**raw) if isinstance(raw, dict) else None
        except TypeError as exc:
            raise HTTPException(422, str(exc)) from exc
        if fault is None or fault.mode not in ("ok", "error", "slow"):
            raise HTTPException(422, "mode must be ok, error or slow")
        _recorder(request).faults[target] = fault
        return {"target": target, "mode": fault.mode}

    @app.post("/_sandbox/callbacks/{target}")
    async def callbacks(request: Request, target: str) -> dict[str, Any]:
        if target not in ("whatsapp", "tiktok"):
            raise HTTPException(404, "callbacks exist for whatsapp (statuses) and tiktok (echoes)")
        raw = await _json_body(request)
        try:
            callback = Callback(**raw) if isinstance(raw, dict) else None
        except TypeError as exc:
            raise HTTPException(422, str(exc)) from exc
        if callback is None:
            raise HTTPException(422, "expected {url, app_secret?, statuses?, delay?}")
        _recorder(request).callbacks[target] = callback
        return {"target": target, "url": callback.url, "statuses": callback.statuses}

    @app.post("/_sandbox/windows")
    async def close_window(request: Request) -> dict[str, Any]:
        """`{"account": page or IG id, "recipient": PSID / IGSID, "open": false}`: the Graph
        fake answers that patient as the platform does outside the messaging window."""
        raw = await _json_body(request)
        if not isinstance(raw, dict) or not raw.get("account") or not raw.get("recipient"):
            raise HTTPException(422, "expected {account, recipient, open?}")
        pair = (str(raw["account"]), str(raw["recipient"]))
        windows = _recorder(request).closed_windows
        windows.discard(pair) if raw.get("open") else windows.add(pair)
        return {"account": pair[0], "recipient": pair[1], "open": pair not in windows}

    @app.delete("/_sandbox/callbacks/{target}")
    async def drop_callbacks(request: Request, target: str) -> dict[str, str]:
        _recorder(request).callbacks.pop(target, None)
        return {"target": target, "status": "removed"}

    @app.get("/_sandbox/callbacks")
    async def deliveries(request: Request) -> dict[str, Any]:
        return {"deliveries": [asdict(d) for d in _recorder(request).deliveries]}

    @app.get("/_sandbox/requests")
    async def requests(
        request: Request,
        target: Annotated[list[str] | None, Query()] = None,  # repeat it for several
        recipient: str | None = None,
        since: float | None = None,  # only what arrived at or after this time (`time`)
    ) -> Response:
        for one in target or ():
            _check_target(one)
        found = _recorder(request).find(target, recipient, since)
        # Each answered row is serialized once (Recorded.encoded), not on every poll.
        body = b'{"requests":[' + b",".join(r.encoded() for r in found) + b"]}"
        return Response(body, media_type="application/json")

    @app.delete("/_sandbox/requests")
    async def reset(request: Request) -> dict[str, str]:
        _recorder(request).reset()
        return {"status": "reset"}

    @app.get("/_sandbox/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}


class SandboxApp(FastAPI):
    """FastAPI behind `PlatformFastPath`, in front of even FastAPI.__call__: its per-request
    telemetry check (which reads the environment) and error middlewares cost about half as
    much CPU again as a platform send's own answer."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(title="TIS TIS sandbox", docs_url=None, redoc_url=None,
                         openapi_url=None)
        self.state.recorder = recorder
        self._front = PlatformFastPath(super().__call__, recorder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)


def create_app(recorder: Recorder | None = None) -> FastAPI:
    app = SandboxApp(recorder or Recorder())
    # Controls first: `/_sandbox/...` must never be taken for a Graph id.
    _add_control_routes(app)
    add_template_routes(app)
    add_media_routes(app)  # after the controls: `/_sandbox/...` is never a media id
    _add_platform_routes(app)
    return app
