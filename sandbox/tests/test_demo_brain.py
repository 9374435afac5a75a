"""The fake Anthropic API's tool use, as the Messages API documents it: several `tool_use`
blocks (id, name, input) in one answer with stop_reason "tool_use", and a `tool_result` only as
the answer to a `tool_use` id of the assistant turn before it
(https://docs.anthropic.com/claude/docs/legacy-tool-use,
https://platform.claude.com/docs/en/agents-and-tools/tool-use/parallel-tool-use). The demo brain
answers the assistant's tools on recognisable intents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tistis_sandbox import demo_brain
from tistis_sandbox.app import create_app
from tistis_sandbox.recorder import Recorder
from tistis_sandbox.testing import ANTHROPIC_HEADERS

MODEL = "claude-sonnet-4-6"


def tool(name: str, **properties: Any) -> dict[str, Any]:
    return {"name": name, "input_schema": {"type": "object", "properties": properties}}


SERVICES = {"type": "array", "items": {"type": "string", "enum": ["Limpieza dental", "Ortodoncia"]}}
ASSISTANT_TOOLS = [
    tool("reply_to_patient", text={"type": "string"}),
    tool("send_quote", services=SERVICES, text={"type": "string"}),
    tool("record_interest", services=SERVICES),
    tool("book_appointment", service={"type": "string", "enum": ["Limpieza dental"]},
         branch={"type": "string", "enum": ["ESVA Nogales"]}),
    tool("hand_over_to_human", reason={"type": "string"}),
]
SYSTEM = [{"type": "text", "text": "Clínica", "cache_control": {"type": "ephemeral"}},
          {"type": "text", "text": "Ahora es martes ... (fecha local 2026-12-01, Tuesday)."}]


@pytest.fixture
def api() -> Iterator[TestClient]:
    """A fresh sandbox with the demo brain on, as `serve --demo-brain` runs it."""
    with TestClient(create_app(Recorder(demo_brain=True))) as client:
        yield client


def ask(api: TestClient, text: str, **extra: Any) -> dict[str, Any]:
    body = {"model": MODEL, "max_tokens": 300, "system": SYSTEM, "tools": ASSISTANT_TOOLS,
            "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": text}],
            **extra}
    answer = api.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert answer.status_code == 200, answer.text
    return answer.json()


class TestToolUseWireFormat:
    def test_a_price_question_gets_two_tool_use_blocks_and_stop_reason_tool_use(
        self, api: TestClient
    ) -> None:
        msg = ask(api, "¿Cuánto cuesta la limpieza?")
        assert msg["stop_reason"] == "tool_use"
        assert [(b["type"], b["name"]) for b in msg["content"]] == [
            ("tool_use", "record_interest"), ("tool_use", "send_quote")]
        assert all(b["id"].startswith("toolu_") for b in msg["content"])
        assert msg["content"][1]["input"]["services"] == ["Limpieza dental"]
        assert msg["content"][1]["input"]["text"].startswith("[demo]")

    def test_a_tool_result_answering_the_previous_tool_use_is_accepted(self, api: TestClient) -> None:
        first = ask(api, "Quiero hablar con una persona")
        block = first["content"][0]
        follow = ask(api, "", messages=[
            {"role": "user", "content": "Quiero hablar con una persona"},
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": block["id"], "content": "escalated"},
                {"type": "text", "text": "gracias"}]},
        ])
        assert follow["type"] == "message"

    def test_a_tool_result_without_its_tool_use_is_refused_like_the_api(
        self, api: TestClient
    ) -> None:
        body = {"model": MODEL, "max_tokens": 100, "messages": [
            {"role": "user", "content": "hola"},
            {"role": "assistant", "content": [{"type": "text", "text": "hola"}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}]}
        answer = api.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
        assert answer.status_code == 400
        assert answer.json()["error"]["type"] == "invalid_request_error"
        assert "tool_use_id" in answer.json()["error"]["message"]

    def test_scripted_tool_calls(self, api: TestClient) -> None:
        api.post("/_sandbox/script/anthropic", json=[{"tool_calls": [
            {"name": "reply_to_patient", "input": {"text": "Hola"}},
            {"name": "hand_over_to_human", "input": {"reason": "queja"}}]}])
        msg = ask(api, "x")
        assert [b["name"] for b in msg["content"]] == ["reply_to_patient", "hand_over_to_human"]
        assert msg["stop_reason"] == "tool_use"


class TestDemoBrainDates:
    TUESDAY = date(2026, 12, 1)

    def test_relative_dates_in_spanish_and_english(self) -> None:
        cases = {
            "mañana a las 10": "2026-12-02T10:00", "el viernes": "2026-12-04",
            "pasado mañana a las 5 de la tarde": "2026-12-03T17:00",
            "el próximo martes": "2026-12-08", "tomorrow at 4pm": "2026-12-02T16:00",
            "today at 9:30": "2026-12-01T09:30", "next monday": "2026-12-07",
        }
        for text, wanted in cases.items():
            assert demo_brain.dates(demo_brain.fold(text), self.TUESDAY) == [wanted], text


def test_without_the_demo_brain_the_first_tool_is_sampled() -> None:
    with TestClient(create_app()) as plain:
        msg = ask(plain, "¿Cuánto cuesta la limpieza?")
    assert [b["name"] for b in msg["content"]] == ["reply_to_patient"]
