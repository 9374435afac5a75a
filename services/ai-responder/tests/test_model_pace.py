"""Replies at the model's pace: against the real broker and database, with the sandbox's fake
Anthropic API slowed down. No connection is held while the model thinks, the debounce waits in
the broker, in-flight replies are bounded, and a kill -9 loses nothing. (Typing and read
indicators, which need the dispatcher too: tests/e2e/test_typing_indicators.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
from prometheus_client import REGISTRY
from tistis_ai_responder.main import start
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import eventually, running

ALWAYS_OPEN = {"timezone": "UTC", **{d: [["00:00", "23:59"]] for d in
                                     ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
OPEN_ALL_DAY = {"ai_context": {"business_hours": ALWAYS_OPEN}}


def tool_answer(reply: str, **extra) -> dict:
    return {"tool_calls": [{"name": "reply_to_patient", "input": {"text": reply}}], **extra}


async def ai_connections(settings) -> int:
    """The ai-responder's connections to this database right now (its pool's application_name)."""
    conn = await asyncpg.connect(settings.migration_database_url)
    try:
        return int(await conn.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE application_name = 'ai-responder' AND datname = current_database()"""))
    finally:
        await conn.close()


async def replies_per_conversation(pool, tenant_id) -> dict[uuid.UUID, int]:
    async with tenant_tx(pool, tenant_id) as conn:
        rows = await conn.fetch(
            """SELECT c.id, count(m.id) FILTER (WHERE m.sender_type = 'ai') AS n
               FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
               GROUP BY c.id""")
    return {r["id"]: r["n"] for r in rows}


class TestSlowModel:
    async def test_many_conversations_in_flight_leave_the_pool_to_other_patients(
        self, own, ai_settings, sandbox, make_tenant, patient_message, app_pool
    ):
        settings, bus = own
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.fault("anthropic", "slow", delay=2.0)
        overrides = {**ai_settings, "db_pool_max": 3, "ai_debounce_seconds": 0.1}
        async with running(start, settings, **overrides):
            for i in range(30):
                await bus.publish(patient_message(tenant, f"hola {i}", user=f"5215500{i:06d}"))
            await eventually(lambda: _at_least(sandbox, 30))  # thirty replies thinking at once
            late = patient_message(tenant, "¿y yo?", user="5215599999999")
            started = asyncio.get_running_loop().time()
            await bus.publish(late)
            await eventually(lambda: _stored(app_pool, tenant.id, late.platform_message_id))
            stored_after = asyncio.get_running_loop().time() - started
            connections = await ai_connections(settings)
            outs = await bus.wait(tenant.id, "message.outbound", count=31, timeout=20)
        assert stored_after < 1.0, "another patient's message waited for the model"
        assert connections <= 3
        assert len({o.recipient_id for o in outs}) == 31

    async def test_a_burst_during_a_slow_model_call_is_answered_once_after_it_in_order(
        self, own, ai_settings, sandbox, make_tenant, patient_message, app_pool
    ):
        settings, bus = own
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", tool_answer("Primera respuesta", delay=1.5),
                             tool_answer("Segunda respuesta"))
        async with running(start, settings, **ai_settings):
            await bus.publish(patient_message(tenant, "uno"))
            await eventually(lambda: _at_least(sandbox, 1))  # the model is thinking now
            for text in ("dos", "tres", "cuatro"):
                await bus.publish(patient_message(tenant, text))
            outs = await bus.wait(tenant.id, "message.outbound", count=2, timeout=15)
            await asyncio.sleep(1.0)  # nothing else follows
            outs = await bus.events(tenant.id, "message.outbound")
        assert [o.text for o in outs] == ["Primera respuesta", "Segunda respuesta"]
        calls = await sandbox.requests("anthropic")
        assert len(calls) == 2
        assert calls[1]["json"]["messages"] == [
            {"role": "user", "content": "uno"},
            {"role": "assistant", "content": "Primera respuesta"},
            {"role": "user", "content": "dos\ntres\ncuatro"}]
        async with tenant_tx(app_pool, tenant.id) as conn:
            stored = await conn.fetch("""SELECT content FROM messages WHERE direction = 'inbound'
                                         ORDER BY created_at, id""")
        assert [r["content"] for r in stored] == ["uno", "dos", "tres", "cuatro"]


class TestBackpressure:
    async def test_replies_in_flight_stay_within_the_bound_and_all_get_answered(
        self, own, ai_settings, sandbox, make_tenant, patient_message
    ):
        settings, bus = own
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.fault("anthropic", "slow", delay=0.6)
        peak = 0.0
        async with running(start, settings, **{**ai_settings, "ai_max_in_flight": 4}):
            for i in range(12):
                await bus.publish(patient_message(tenant, f"hola {i}", user=f"5215511{i:06d}"))
            deadline = asyncio.get_running_loop().time() + 15
            while asyncio.get_running_loop().time() < deadline:
                peak = max(peak, REGISTRY.get_sample_value("tistis_ai_replies_in_flight") or 0)
                if len(await bus.events(tenant.id, "message.outbound")) >= 12:
                    break
                await asyncio.sleep(0.02)
            outs = await bus.events(tenant.id, "message.outbound")
        assert len({o.recipient_id for o in outs}) == 12
        assert 1 <= peak <= 4


class TestCrash:
    async def test_kill_9_while_replies_are_pending_then_every_message_gets_one_reply(
        self, own, sandbox, sandbox_url, make_tenant, patient_message, app_pool
    ):
        settings, bus = own
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.fault("anthropic", "slow", delay=3.0)
        responder = _spawn(settings, sandbox_url)
        try:
            await _ready(responder)
            first = [patient_message(tenant, f"hola {i}", user=f"5215522{i:06d}") for i in range(6)]
            for message in first:
                await bus.publish(message)
            await eventually(lambda: _at_least(sandbox, 6))  # six model calls in flight
            for i in range(6):  # and six more still in their debounce
                await bus.publish(patient_message(tenant, f"hola {i}", user=f"5215533{i:06d}"))
            await asyncio.sleep(0.1)
            responder.send_signal(signal.SIGKILL)
            responder.wait()
            await sandbox.fault("anthropic", "ok")
            responder = _spawn(settings, sandbox_url)
            await eventually(lambda: _all_replied(app_pool, tenant.id, 12), timeout=60)
            await asyncio.sleep(1.5)  # a second reply, if any, would be stored by now
        finally:
            responder.send_signal(signal.SIGKILL)
            responder.wait()
        counts = await replies_per_conversation(app_pool, tenant.id)
        assert len(counts) == 12 and set(counts.values()) == {1}
        outs = await bus.events(tenant.id, "message.outbound")
        assert len({o.message_id for o in outs}) == 12


async def _at_least(sandbox, n: int) -> bool:
    return len(await sandbox.requests("anthropic")) >= n


async def _stored(pool, tenant_id, platform_message_id: str) -> bool:
    async with tenant_tx(pool, tenant_id) as conn:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM messages WHERE platform_message_id = $1", platform_message_id))


async def _all_replied(pool, tenant_id, n: int) -> bool:
    counts = await replies_per_conversation(pool, tenant_id)
    return len(counts) == n and all(counts.values())


def _spawn(settings, sandbox_url: str) -> subprocess.Popen:
    """The ai-responder as a process of its own, so that it can be killed -9."""
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "RABBITMQ_URL": settings.rabbitmq_url, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0",
           "ANTHROPIC_BASE_URL": sandbox_url, "ANTHROPIC_API_KEY": "sk-ant-test",
           "AI_DEBOUNCE_SECONDS": "0.5", "AI_SDK_MAX_RETRIES": "0", "AI_TIMEOUT_SECONDS": "10",
           "RETRY_DELAYS": "[0.2, 0.5]", "LOG_LEVEL": "WARNING"}
    binary = Path(sys.executable).parent / "tistis-ai-responder"
    return subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _ready(proc: subprocess.Popen, settle: float = 1.5) -> None:
    """Started (its consumers attach within a moment of start); fails early if it exited."""
    await asyncio.sleep(settle)
    assert proc.poll() is None, f"ai-responder exited with {proc.returncode}"
