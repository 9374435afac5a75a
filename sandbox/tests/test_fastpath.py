from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse
from tistis_sandbox import create_app
from tistis_sandbox.fastpath import route_of
from tistis_sandbox.testing import (
    ANTHROPIC_HEADERS,
    BEARER,
    PAGE_PATH,
    PAGE_TEXT,
    TIKTOK_PATH,
    TT_TEXT,
    WA_PATH,
    WA_TEXT,
)
from tistis_sandbox.wire import Answer, token_fingerprint

CLAUDE = {"model": "claude-sonnet-4-6", "max_tokens": 50,
          "messages": [{"role": "user", "content": "Hola"}]}
RANDOM_IDS = ("id", "message_id", "request_id", "fbtrace_id")
# (path, body, headers): answers of every kind, with and without errors
EXCHANGES: list[tuple[str, Any, dict[str, str]]] = [
    ("/v1/messages", CLAUDE, ANTHROPIC_HEADERS),
    ("/v1/messages", CLAUDE, {"anthropic-version": "2023-06-01"}),
    ("/v1/messages", "not json", ANTHROPIC_HEADERS),
    ("/v1/messages/count_tokens", CLAUDE, ANTHROPIC_HEADERS),
    (WA_PATH, WA_TEXT, BEARER),
    (WA_PATH, {**WA_TEXT, "to": "x"}, BEARER),
    (WA_PATH, WA_TEXT, {}),
    (PAGE_PATH, PAGE_TEXT, BEARER),
    (PAGE_PATH, "not json", BEARER),
    (TIKTOK_PATH, TT_TEXT, {"Access-Token": "t"}),
    (TIKTOK_PATH, "not json", {"Access-Token": "t"}),
]


def _post(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    if body == "not json":
        return client.post(path, content=b"{oops", headers=headers)
    return client.post(path, json=body, headers=headers)


def _shape(value: Any) -> Any:
    """The answer with its random ids blanked out."""
    if isinstance(value, dict):
        return {k: "<id>" if k in RANDOM_IDS else _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


class TestRouting:
    @pytest.mark.parametrize(("path", "route"), [
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "count_tokens"),
        ("/v26.0/100000000000001/messages", "graph"),
        ("/v1/messages/messages", "graph"),
        ("/open_api/v1.3/business/message/send/", "tiktok"),
        ("/open_api/v1.3/business/message/send", None),  # FastAPI redirects it
        ("/v26.0/100000000000001/messages/", None),
        ("/_sandbox/script/messages", None),  # a control, not a Graph id
        ("/v26.0//messages", None),
        ("/_sandbox/requests", None),
    ])
    def test_the_fast_path_takes_what_the_fastapi_routes_take(self, path: str,
                                                              route: str | None) -> None:
        assert route_of(path) == route

    def test_what_the_fast_path_leaves_still_behaves_as_before(self, api: TestClient) -> None:
        assert api.get("/v1/messages").status_code == 405
        assert api.post("/_sandbox/script/messages", json={}).status_code == 404
        assert api.post(WA_PATH + "/", json=WA_TEXT, headers=BEARER,
                        follow_redirects=False).status_code == 307


class TestSameAnswerEitherWay:
    @pytest.mark.parametrize(("path", "body", "headers"), EXCHANGES)
    def test_fastapi_routes_answer_like_the_fast_path(self, path: str, body: Any,
                                                     headers: dict[str, str]) -> None:
        app = create_app()

        async def fastapi_only(scope: Any, receive: Any, send: Any) -> None:
            await FastAPI.__call__(app, scope, receive, send)

        with TestClient(app) as fast, TestClient(fastapi_only) as slow:
            a, b = _post(fast, path, body, headers), _post(slow, path, body, headers)
        assert (a.status_code, _shape(a.json())) == (b.status_code, _shape(b.json()))
        assert [k for k, _ in a.headers.multi_items()] == [k for k, _ in b.headers.multi_items()]
        recorded = [{k: v for k, v in r.to_dict().items() if k not in ("time", "answered_id")}
                    for r in app.state.recorder.find()]
        assert len(recorded) in (0, 2) and recorded[:1] == recorded[1:]  # both alike, or none


class TestAnswerEncoding:
    @pytest.mark.parametrize(("status", "headers"), [
        (200, None), (429, {"Retry-After": "1", "request-id": "req_1"}), (204, None),
        (200, {"Content-Type": "application/json; charset=utf-8"}),
    ])
    def test_same_bytes_and_headers_as_json_response(self, status: int,
                                                    headers: dict[str, str] | None) -> None:
        body = {"text": "¡Hola! «cita»", "n": [1, 2.5, None, True]}
        content, raw = Answer(status, body, headers).encode()
        reference = JSONResponse(body, status_code=status, headers=headers)
        assert content == reference.body
        assert raw == reference.raw_headers


class TestRequestFilters:
    def test_several_targets_and_since(self, api: TestClient) -> None:
        api.post(WA_PATH, json=WA_TEXT, headers=BEARER)
        api.post(TIKTOK_PATH, json=TT_TEXT, headers={"Access-Token": "t"})
        middle = time.time()
        api.post(PAGE_PATH, json=PAGE_TEXT, headers=BEARER)
        api.post("/v1/messages", json=CLAUDE, headers=ANTHROPIC_HEADERS)

        def targets(**params: Any) -> list[str]:
            r = api.get("/_sandbox/requests", params=params)
            assert r.status_code == 200, r.text
            return [row["target"] for row in r.json()["requests"]]

        assert targets() == ["whatsapp", "tiktok", "graph", "anthropic"]
        assert targets(target=["whatsapp", "graph", "tiktok"]) == ["whatsapp", "tiktok", "graph"]
        assert targets(since=middle) == ["graph", "anthropic"]
        assert targets(target="graph", since=middle) == ["graph"]
        assert api.get("/_sandbox/requests", params={"target": ["graph", "telegram"]}
                       ).status_code == 404

    def test_a_polled_row_is_the_same_on_every_poll(self, api: TestClient) -> None:
        api.post(WA_PATH, json=WA_TEXT, headers=BEARER)
        first = api.get("/_sandbox/requests").content
        assert api.get("/_sandbox/requests").content == first
        [row] = api.get("/_sandbox/requests").json()["requests"]
        assert row["json"] == WA_TEXT
        assert row["headers"]["authorization"] == "<redacted>"
        assert list(row) == ["target", "method", "path", "query", "headers", "json", "time",
                             "status", "answered_id", "error_code", "recipient", "text",
                             "kind", "token"]
        assert row["token"] == token_fingerprint(BEARER["Authorization"][7:])  # not the token
