from __future__ import annotations

from typing import Any, cast

import anthropic
import pytest
from fastapi.testclient import TestClient
from tistis_sandbox import SandboxClient
from tistis_sandbox.testing import ANTHROPIC_HEADERS

MODEL = "claude-sonnet-4-6"
REPLY_TOOL: Any = {
    "name": "reply",
    "description": "Answer the patient and report what you noticed.",
    "input_schema": {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "signals": {"type": "array", "items": {"enum": ["interested", "urgent"]}},
            "language": {"type": "string", "enum": ["es", "en"]},
            "confidence": {"type": "number"},
            "actions": {"type": "array", "items": {"$ref": "#/$defs/Action"}},
            "appointment": {"anyOf": [{"$ref": "#/$defs/Appointment"}, {"type": "null"}]},
            "optional_note": {"type": "string"},
        },
        "required": ["text", "signals", "language", "confidence", "appointment"],
        "$defs": {
            "Action": {"type": "object", "properties": {"kind": {"type": "string"}}},
            "Appointment": {
                "type": "object",
                "properties": {"service": {"type": "string"},
                               "date": {"type": "string", "format": "date"},
                               "urgent": {"type": "boolean"}},
                "required": ["service", "date", "urgent"],
            },
        },
    },
}
ESCALATE_TOOL: Any = {"name": "escalate", "input_schema": {
    "type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}}
HOLA = "Hola, quiero una cita para limpieza"
FORCE_REPLY: Any = {"type": "tool", "name": "reply"}


def request(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": MODEL, "max_tokens": 500,
                           "messages": [{"role": "user", "content": HOLA}]}
    out.update(overrides)
    return out


def post(api: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return api.post("/v1/messages", json=body,
                    headers=ANTHROPIC_HEADERS if headers is None else headers)


def cached_system(n: int) -> Any:
    context = "Clínica ESVA Dental. Servicios: limpieza $500, blanqueamiento $2500. " * n
    return [{"type": "text", "text": context, "cache_control": {"type": "ephemeral"}}]


class TestMessagesApi:
    def test_text_reply_has_the_real_shape(self, api: TestClient) -> None:
        r = post(api, request())
        assert r.status_code == 200
        msg = r.json()
        assert msg["id"].startswith("msg_")
        assert (msg["type"], msg["role"], msg["model"]) == ("message", "assistant", MODEL)
        assert msg["stop_reason"] == "end_turn"
        assert msg["stop_sequence"] is None
        [block] = msg["content"]
        assert block["type"] == "text"
        assert f"«{HOLA}»" in block["text"]
        assert set(msg["usage"]) >= {"input_tokens", "output_tokens",
                                     "cache_creation_input_tokens", "cache_read_input_tokens"}
        assert r.headers["request-id"].startswith("req_")

    def test_tool_use_input_follows_the_schema(self, api: TestClient) -> None:
        msg = post(api, request(tools=[REPLY_TOOL, ESCALATE_TOOL])).json()
        assert msg["stop_reason"] == "tool_use"
        [block] = msg["content"]
        assert block["type"] == "tool_use"
        assert block["id"].startswith("toolu_")
        assert block["name"] == "reply"
        data = block["input"]
        assert set(data) == {"text", "signals", "language", "confidence", "appointment"}
        assert data["text"].startswith("¡Hola!") and HOLA in data["text"]
        assert data["signals"] == []
        assert data["language"] == "es"
        assert data["confidence"] == 0
        assert data["appointment"]["urgent"] is False
        assert len(data["appointment"]["date"]) == 10  # ISO date, not a sentence

    def test_tool_choice_picks_the_tool(self, api: TestClient) -> None:
        choice = {"type": "tool", "name": "escalate"}
        msg = post(api, request(tools=[REPLY_TOOL, ESCALATE_TOOL], tool_choice=choice)).json()
        assert msg["content"][0]["name"] == "escalate"
        none = post(api, request(tools=[REPLY_TOOL], tool_choice={"type": "none"})).json()
        assert none["content"][0]["type"] == "text"

    def test_prompt_cache_is_read_on_the_second_call(self, api: TestClient) -> None:
        body = request(system=cached_system(40))
        first = post(api, body).json()["usage"]
        assert first["cache_creation_input_tokens"] > 0
        assert first["cache_read_input_tokens"] == 0
        second = post(api, {**body, "messages": [{"role": "user", "content": "¿Precio?"}]}
                      ).json()["usage"]
        assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
        assert second["cache_creation_input_tokens"] == 0

    def test_no_cache_control_means_no_cache_tokens(self, api: TestClient) -> None:
        usage = post(api, request(system="Eres una asistente dental.")).json()["usage"]
        assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0

    def test_count_tokens_matches_the_billed_estimate(self, api: TestClient) -> None:
        body = request(system="Eres una asistente dental.")
        counted = api.post("/v1/messages/count_tokens", json={
            k: v for k, v in body.items() if k != "max_tokens"}, headers=ANTHROPIC_HEADERS)
        assert counted.status_code == 200
        assert counted.json()["input_tokens"] == post(api, body).json()["usage"]["input_tokens"]

    def test_scripted_text_and_tool_input(self, api: TestClient) -> None:
        api.post("/_sandbox/script/anthropic", json=[
            {"text": "Claro, ¿qué día te acomoda?"},
            {"tool_input": {"text": "Te agendo el lunes", "signals": ["interested"]}},
        ])
        assert post(api, request()).json()["content"][0]["text"] == "Claro, ¿qué día te acomoda?"
        block = post(api, request(tools=[REPLY_TOOL])).json()["content"][0]
        assert block["input"] == {"text": "Te agendo el lunes", "signals": ["interested"]}
        rec = api.get("/_sandbox/requests", params={"target": "anthropic"}).json()["requests"]
        assert [r["headers"]["x-api-key"] for r in rec] == ["<redacted>", "<redacted>"]


class TestMessagesApiErrors:
    def test_missing_key_is_authentication_error(self, api: TestClient) -> None:
        r = post(api, request(), headers={"anthropic-version": "2023-06-01"})
        assert r.status_code == 401
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "authentication_error"

    def test_invalid_key_is_authentication_error(self, api: TestClient) -> None:
        r = post(api, request(), headers={**ANTHROPIC_HEADERS, "x-api-key": "invalid-key"})
        assert (r.status_code, r.json()["error"]["type"]) == (401, "authentication_error")

    def test_missing_version_header_is_invalid(self, api: TestClient) -> None:
        r = post(api, request(), headers={"x-api-key": "k"})
        assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")

    @pytest.mark.parametrize("bad", [
        {"max_tokens": 0}, {"messages": []}, {"model": ""}, {"temperature": 1.5},
        {"messages": [{"role": "system", "content": "x"}]},
        {"tools": [REPLY_TOOL], "tool_choice": {"type": "tool", "name": "missing"}},
    ])
    def test_invalid_bodies_are_refused(self, api: TestClient, bad: dict[str, Any]) -> None:
        r = post(api, request(**bad))
        assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")

    @pytest.mark.parametrize(("status", "etype"), [
        (429, "rate_limit_error"), (500, "api_error"), (529, "overloaded_error")])
    def test_scripted_errors_have_the_api_shape(self, api: TestClient, status: int,
                                                etype: str) -> None:
        api.post("/_sandbox/script/anthropic", json={"status": status})
        r = post(api, request())
        assert r.status_code == status
        body = r.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == etype
        assert body["error"]["message"]
        if status == 429:
            assert r.headers["retry-after"]


def sdk(live_url: str, **kwargs: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=live_url, api_key="sk-ant-sandbox", **kwargs)


class TestWithTheOfficialSdk:
    async def test_text(self, live_url: str, sandbox: SandboxClient) -> None:
        async with sdk(live_url) as client:
            msg = await client.messages.create(
                model=MODEL, max_tokens=300, messages=[{"role": "user", "content": HOLA}])
        assert msg.stop_reason == "end_turn"
        assert msg.content[0].type == "text"
        assert HOLA in msg.content[0].text
        assert msg.usage.input_tokens > 0

    async def test_tool_use(self, live_url: str, sandbox: SandboxClient) -> None:
        async with sdk(live_url) as client:
            msg = await client.messages.create(
                model=MODEL, max_tokens=300, tools=[REPLY_TOOL],
                tool_choice=FORCE_REPLY,
                system=cached_system(30),
                messages=[{"role": "user", "content": HOLA}])
            again = await client.messages.create(
                model=MODEL, max_tokens=300, tools=[REPLY_TOOL],
                system=cached_system(30),
                messages=[{"role": "user", "content": "¿Cuánto cuesta?"}])
        assert msg.stop_reason == "tool_use"
        block = msg.content[0]
        assert block.type == "tool_use" and block.name == "reply"
        assert HOLA in cast(dict[str, str], block.input)["text"]
        assert (again.usage.cache_read_input_tokens or 0) > 0

    async def test_rate_limit_then_success_is_retried_by_the_sdk(
        self, live_url: str, sandbox: SandboxClient
    ) -> None:
        sandbox.script("anthropic", {"status": 429, "headers": {"retry-after": "0.1"}})
        async with sdk(live_url, max_retries=2) as client:
            msg = await client.messages.create(
                model=MODEL, max_tokens=100, messages=[{"role": "user", "content": HOLA}])
        assert msg.content[0].type == "text"
        assert [r["status"] for r in sandbox.requests("anthropic")] == [429, 200]

    async def test_server_error_forever_raises_after_retries(
        self, live_url: str, sandbox: SandboxClient
    ) -> None:
        sandbox.fault("anthropic", "error", status=500)
        async with sdk(live_url, max_retries=1) as client:
            with pytest.raises(anthropic.InternalServerError) as exc:
                await client.messages.create(
                    model=MODEL, max_tokens=100, messages=[{"role": "user", "content": HOLA}])
        assert exc.value.status_code == 500
        assert [r["status"] for r in sandbox.requests("anthropic")] == [500, 500]

    async def test_overloaded_is_its_own_error(self, live_url: str,
                                               sandbox: SandboxClient) -> None:
        sandbox.script("anthropic", {"status": 529})
        async with sdk(live_url, max_retries=0) as client:
            with pytest.raises(anthropic.APIStatusError) as exc:
                await client.messages.create(
                    model=MODEL, max_tokens=100, messages=[{"role": "user", "content": HOLA}])
        assert exc.value.status_code == 529
        assert exc.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]

    async def test_slow_answer_times_out_in_the_sdk(self, live_url: str,
                                                    sandbox: SandboxClient) -> None:
        sandbox.script("anthropic", {"delay": 1.0})
        async with sdk(live_url, max_retries=0, timeout=0.3) as client:
            with pytest.raises(anthropic.APITimeoutError):
                await client.messages.create(
                    model=MODEL, max_tokens=100, messages=[{"role": "user", "content": HOLA}])
