"""What `SANDBOX_AI=1 make run` plus `tistis-sandbox play` shows: the demo clinic, all five
services and the sandbox with its demo brain (the fake model, labelled "[demo]") walk through a
quote, a booking and an escalation. `play` runs as the command it is (typer's runner)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.admin import load_tenant, read_fixture
from tistis_common.db import connect, tenant_tx
from tistis_common.secrets import SecretBox
from tistis_common.testing.plugin import eventually, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import webhooks as wh
from tistis_sandbox.main import app as sandbox_cli
from tistis_scheduler.main import start as start_scheduler
from tistis_scorer.main import start as start_scorer
from typer.testing import CliRunner

FIXTURE = Path(__file__).parents[2] / "fixtures" / "esva-dental.yaml"
PATIENT = "5215519990000"


@pytest.fixture
async def demo(settings, sandbox_url, sandbox, monkeypatch):
    conn = await connect(settings.migration_database_url)
    try:
        tenant_id = await load_tenant(conn, read_fixture(FIXTURE), SecretBox(settings.secrets_keys))
    finally:
        await conn.close()
    monkeypatch.setenv("META_APP_SECRET", wh.DEFAULT_SECRET)  # what run.sh sets for the sandbox
    s = settings.model_copy(update={  # run.sh with SANDBOX_AI=1
        "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
        "anthropic_base_url": sandbox_url, "anthropic_api_key": "sk-ant-sandbox",
        "meta_app_secret": wh.DEFAULT_SECRET, "ai_debounce_seconds": 0.1,
        "scheduler_tick_seconds": 0,
    })
    async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
            running(start_scheduler, s), running(start_dispatcher, s), running(start_scorer, s):
        async def play(text: str) -> str:
            result = await asyncio.to_thread(CliRunner().invoke, sandbox_cli, [
                "play", text, "--tenant", "esva-dental", "--from", PATIENT,
                "--ingress", f"http://127.0.0.1:{ingress.http_port}", "--sandbox", sandbox_url,
                "--wait", "15", "--settle", "1.5"])
            assert result.exit_code == 0, result.output
            return result.output
        yield tenant_id, play


async def test_the_demo_walks_through_a_quote_a_booking_and_an_escalation(demo, app_pool):
    tenant_id, play = demo
    quote = await play("Hola, ¿cuánto cuesta una limpieza?")
    assert "[demo]" in quote and "Limpieza dental: $600 a $900 MXN" in quote

    booking = await play("Quiero una cita para limpieza el lunes a las 10")
    assert "cita_confirmada" in booking, booking  # Monday 10:00 is free in the demo clinic

    async def booked():
        async with tenant_tx(app_pool, tenant_id) as conn:
            return await conn.fetchval(
                """SELECT count(*) FROM appointments a JOIN leads l ON l.id = a.lead_id
                   WHERE l.platform_user_id = $1 AND a.status = 'booked'""", PATIENT)
    assert await eventually(booked, timeout=10) == 1

    human = await play("Quiero hablar con una persona")
    assert "Una persona de nuestro equipo te atenderá" in human
    async with tenant_tx(app_pool, tenant_id) as conn:
        status = await conn.fetchval(
            """SELECT c.status FROM conversations c JOIN leads l ON l.id = c.lead_id
               WHERE l.platform_user_id = $1""", PATIENT)
        interests = await conn.fetchval(
            "SELECT interested_services FROM leads WHERE platform_user_id = $1", PATIENT)
        quotes = await conn.fetchval("SELECT count(*) FROM quotes q JOIN leads l ON l.id = q.lead_id "
                                     "WHERE l.platform_user_id = $1", PATIENT)
    assert status == "escalated" and interests == ["Limpieza dental"] and quotes == 1
