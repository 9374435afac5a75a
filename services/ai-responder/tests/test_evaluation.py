"""The evaluation set against the sandbox's demo brain: every case must pass (the plumbing:
prompt, tools, validation, rendering), and `make eval` without a key says so and exits 0."""

from __future__ import annotations

import pytest
from tistis_ai_responder import evaluation
from tistis_ai_responder.model import CircuitBreaker, ClaudeResponder
from tistis_common.admin import read_fixture


async def test_every_case_passes_against_the_demo_brain(sandbox, sandbox_url):
    now, cases = evaluation.load()
    assert len(cases) >= 30
    assert {c["channel"] for c in cases} == {"whatsapp", "facebook", "instagram", "tiktok"}
    assert {c["lang"] for c in cases} == {"es", "en"}
    clinic = evaluation.clinic_context(read_fixture(evaluation.CLINIC), "claude-sonnet-4-6")
    responder = ClaudeResponder("sk-ant-sandbox", sandbox_url, timeout=10, max_retries=0,
                                breaker=CircuitBreaker(10**6, 1))
    try:
        results = await evaluation.run_all(responder, clinic, cases, now)
    finally:
        await responder.close()
    assert all(r.passed for r in results), evaluation.report(results)
    requests = await sandbox.requests("anthropic")
    body = requests[0]["json"]
    assert body["tool_choice"] == {"type": "any"}
    assert "fecha local 2026-12-01" in body["system"][1]["text"]


def test_without_a_key_make_eval_says_so_and_exits_zero(monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(SystemExit) as done:
        evaluation.cli([])
    assert done.value.code == 0
    assert "ANTHROPIC_API_KEY is not set" in capsys.readouterr().out
