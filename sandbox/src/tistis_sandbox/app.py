"""The sandbox as one FastAPI app: the four fake platforms plus `/_sandbox/` controls.

WhatsApp Cloud API and the Messenger/Instagram Send API live on the same Graph host and the
same path shape (`/{version}/{id}/messages`), exactly as in production where one
`GRAPH_API_BASE_URL` serves both; the body tells them apart (`messaging_product`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from tistis_sandbox import anthropic, graph, tiktok, whatsapp
from tistis_sandbox.callbacks import Callback
from tistis_sandbox.meta import graph_error
from tistis_sandbox.recorder import TARGETS, Fault, Recorder, Step

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


def _add_platform_routes(app: FastAPI) -> None:
    @app.post("/v1/messages")
    async def anthropic_messages(request: Request) -> Response:
        body = await _json_body(request)
        if body is _NOT_JSON:
            return anthropic.error(400, "Request body is not valid JSON")
        return await anthropic.handle(_recorder(request), request, body)

    @app.post("/v1/messages/count_tokens")
    async def anthropic_count_tokens(request: Request) -> Response:
        body = await _json_body(request)
        if body is _NOT_JSON:
            return anthropic.error(400, "Request body is not valid JSON")
        return anthropic.count_tokens(body)

    @app.post("/open_api/{version}/business/message/send/")
    async def tiktok_send(request: Request, version: str) -> Response:
        body = await _json_body(request)
        if body is _NOT_JSON:
            return JSONResponse(tiktok.envelope(tiktok.INVALID_PARAMS, "Invalid JSON body"))
        return await tiktok.handle(_recorder(request), request, body)

    @app.post("/{version}/{account_id}/messages")
    async def graph_messages(request: Request, version: str, account_id: str) -> Response:
        body = await _json_body(request)
        if body is _NOT_JSON:
            return graph_error(100, message="(#100) Request body is not valid JSON")
        is_whatsapp = isinstance(body, dict) and (
            "messaging_product" in body or ("to" in body and "recipient" not in body)
        )
        module = whatsapp if is_whatsapp else graph
        return await module.handle(_recorder(request), request, body)


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
        if target != "whatsapp":
            raise HTTPException(404, "status callbacks exist for whatsapp only")
        raw = await _json_body(request)
        try:
            callback = Callback(**raw) if isinstance(raw, dict) else None
        except TypeError as exc:
            raise HTTPException(422, str(exc)) from exc
        if callback is None:
            raise HTTPException(422, "expected {url, app_secret?, statuses?, delay?}")
        _recorder(request).callbacks[target] = callback
        return {"target": target, "url": callback.url, "statuses": callback.statuses}

    @app.delete("/_sandbox/callbacks/{target}")
    async def drop_callbacks(request: Request, target: str) -> dict[str, str]:
        _recorder(request).callbacks.pop(target, None)
        return {"target": target, "status": "removed"}

    @app.get("/_sandbox/callbacks")
    async def deliveries(request: Request) -> dict[str, Any]:
        return {"deliveries": [asdict(d) for d in _recorder(request).deliveries]}

    @app.get("/_sandbox/requests")
    async def requests(
        request: Request, target: str | None = None, recipient: str | None = None
    ) -> dict[str, Any]:
        if target is not None:
            _check_target(target)
        found = _recorder(request).find(target, recipient)
        return {"requests": [r.to_dict() for r in found]}

    @app.delete("/_sandbox/requests")
    async def reset(request: Request) -> dict[str, str]:
        _recorder(request).reset()
        return {"status": "reset"}

    @app.get("/_sandbox/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}


def create_app(recorder: Recorder | None = None) -> FastAPI:
    app = FastAPI(title="TIS TIS sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.recorder = recorder or Recorder()
    # Controls first: `/_sandbox/...` must never be taken for a Graph id.
    _add_control_routes(app)
    _add_platform_routes(app)
    return app
