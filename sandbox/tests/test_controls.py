from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi.testclient import TestClient
from tistis_sandbox import AsyncSandboxClient
from tistis_sandbox.testing import BEARER, PAGE_PATH, PAGE_TEXT, TIKTOK_PATH, TT_TEXT, WA_PATH, WA_TEXT


def wa(api: TestClient) -> Any:
    return api.post(WA_PATH, json=WA_TEXT, headers=BEARER)


def script(api: TestClient, target: str, *steps: dict[str, Any]) -> None:
    r = api.post(f"/_sandbox/script/{target}", json=list(steps))
    assert r.status_code == 200, r.text


class TestScripts:
    def test_rate_limit_then_success(self, api: TestClient) -> None:
        script(api, "whatsapp",
               {"status": 429, "headers": {"Retry-After": "1"}, "error_code": 130429})
        first = wa(api)
        assert first.status_code == 429
        assert first.headers["retry-after"] == "1"
        assert first.json()["error"]["code"] == 130429
        assert wa(api).status_code == 200

    def test_steps_are_consumed_one_per_request_in_order(self, api: TestClient) -> None:
        script(api, "whatsapp", {"error_code": 131047}, {"error_code": 190}, {"status": 500})
        assert [(r.status_code, r.json()["error"]["code"]) for r in (wa(api), wa(api), wa(api))
                ] == [(400, 131047), (401, 190), (500, 131000)]
        assert wa(api).status_code == 200

    def test_window_error_has_whatsapp_details(self, api: TestClient) -> None:
        script(api, "whatsapp", {"error_code": 131047})
        error = wa(api).json()["error"]
        assert error["error_data"]["messaging_product"] == "whatsapp"
        assert "24 hours" in error["error_data"]["details"]

    def test_delay_slows_the_answer(self, api: TestClient) -> None:
        script(api, "whatsapp", {"delay": 0.3})
        started = time.monotonic()
        assert wa(api).status_code == 200
        assert time.monotonic() - started >= 0.3

    def test_graph_script_uses_graph_errors(self, api: TestClient) -> None:
        script(api, "graph", {"error_code": 10, "error_subcode": 2018278})
        r = api.post(PAGE_PATH, json=PAGE_TEXT, params={"access_token": "t"})
        error = r.json()["error"]
        assert (error["code"], error["error_subcode"]) == (10, 2018278)
        assert "messaging_product" not in error.get("error_data", {})

    def test_tiktok_script_answers_http_200_with_code(self, api: TestClient) -> None:
        script(api, "tiktok", {"error_code": 40100}, {"status": 500})
        limited = api.post(TIKTOK_PATH, json=TT_TEXT, headers={"Access-Token": "t"})
        assert (limited.status_code, limited.json()["code"]) == (200, 40100)
        broken = api.post(TIKTOK_PATH, json=TT_TEXT, headers={"Access-Token": "t"})
        assert broken.status_code == 500

    def test_scripts_are_per_target(self, api: TestClient) -> None:
        script(api, "graph", {"status": 500})
        assert wa(api).status_code == 200

    def test_bad_step_and_unknown_target_are_refused(self, api: TestClient) -> None:
        assert api.post("/_sandbox/script/whatsapp", json={"stauts": 500}).status_code == 422
        assert api.post("/_sandbox/script/telegram", json={"status": 500}).status_code == 404


class TestFaults:
    def test_error_mode_stands_until_ok(self, api: TestClient) -> None:
        api.post("/_sandbox/faults/whatsapp", json={"mode": "error", "status": 500})
        assert [wa(api).status_code for _ in range(3)] == [500, 500, 500]
        api.post("/_sandbox/faults/whatsapp", json={"mode": "ok"})
        assert wa(api).status_code == 200

    def test_slow_mode_delays_every_answer(self, api: TestClient) -> None:
        api.post("/_sandbox/faults/whatsapp", json={"mode": "slow", "delay": 0.2})
        started = time.monotonic()
        wa(api)
        wa(api)
        assert time.monotonic() - started >= 0.4

    def test_a_script_wins_over_the_standing_fault(self, api: TestClient) -> None:
        api.post("/_sandbox/faults/whatsapp", json={"mode": "error", "status": 503})
        script(api, "whatsapp", {"delay": 0})
        assert wa(api).status_code == 200
        assert wa(api).status_code == 503

    def test_bad_mode_is_refused(self, api: TestClient) -> None:
        assert api.post("/_sandbox/faults/whatsapp", json={"mode": "chaos"}).status_code == 422


class TestRequests:
    def test_filter_by_target_and_recipient_then_reset(self, api: TestClient) -> None:
        wa(api)
        api.post(PAGE_PATH, json=PAGE_TEXT, params={"access_token": "t"})
        api.post("/_sandbox/faults/whatsapp", json={"mode": "error"})
        script(api, "graph", {"status": 500})
        everything = api.get("/_sandbox/requests").json()["requests"]
        assert [r["target"] for r in everything] == ["whatsapp", "graph"]
        only = api.get("/_sandbox/requests", params={"recipient": "123"}).json()["requests"]
        assert [r["target"] for r in only] == ["graph"]
        assert {"method", "path", "headers", "json", "time", "answered_id"} <= set(only[0])

        assert api.delete("/_sandbox/requests").status_code == 200
        assert api.get("/_sandbox/requests").json()["requests"] == []
        assert wa(api).status_code == 200  # fault cleared
        assert api.post(PAGE_PATH, json=PAGE_TEXT,
                        params={"access_token": "t"}).status_code == 200  # script cleared


class TestWrongJsonTypes:
    """A value of the wrong JSON type is a validation error, never a 500."""

    def test_every_fake_answers_its_own_validation_error(self, api: TestClient) -> None:
        bad_wa = {**WA_TEXT, "type": "interactive", "interactive": {
            "type": "list", "header": "oops", "body": {"text": "x"}, "action": {}}}
        assert api.post(WA_PATH, json=bad_wa, headers=BEARER).status_code == 400
        bad_page = {**PAGE_TEXT, "message": {"text": "x", "quick_replies": ["oops"]}}
        r = api.post(PAGE_PATH, json=bad_page, params={"access_token": "t"})
        assert r.status_code == 400
        bad_tt = {**TT_TEXT, "text": "oops"}
        r = api.post(TIKTOK_PATH, json=bad_tt, headers={"Access-Token": "t"})
        assert (r.status_code, r.json()["code"]) == (200, 40002)
        r = api.post("/v1/messages", json={"model": "m", "max_tokens": 5, "temperature": "hot",
                                           "messages": [{"role": "user", "content": "x"}]},
                     headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert r.status_code == 400


class TestAsyncClient:
    async def test_script_fault_wait_and_reset(self, live_url: str) -> None:

        async with AsyncSandboxClient(live_url) as sbx, httpx.AsyncClient(
            base_url=live_url, headers=BEARER
        ) as http:
            await sbx.reset()
            await sbx.script("whatsapp", {"error_code": 131056})
            assert (await http.post(WA_PATH, json=WA_TEXT)).status_code == 400
            assert (await http.post(WA_PATH, json=WA_TEXT)).status_code == 200
            [ok] = await sbx.wait_for("whatsapp", recipient="5215512345678", within=1)
            assert ok["answered_id"].startswith("wamid.")
            await sbx.fault("whatsapp", "error", status=503)
            assert (await http.post(WA_PATH, json=WA_TEXT)).status_code == 503
            await sbx.reset()
            assert await sbx.requests() == []
