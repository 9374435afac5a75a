"""The operator side end to end: an agent's message sent through the operator API and an n8n
answer posted to the legacy callback both reach the patient on the (fake) platform, through the
real ingress, RabbitMQ, the dispatcher and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
import pytest
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, tenant_tx
from tistis_common.testing.plugin import eventually, running, temporary_vhost
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import AsyncSandboxClient, running_sandbox

CRON = "e2e-cron-secret"


@pytest.fixture(scope="module")
def sandbox_url():
    with running_sandbox() as url:
        yield url


@pytest.fixture
async def own_vhost(settings):
    """The session's vhost may hold consumers other modules left running (a session-scoped
    dispatcher that sends to its own sandbox): this test's services get a vhost of their own."""
    async with temporary_vhost(settings.rabbitmq_management_url, settings.rabbitmq_url,
                               "tistis_e2e") as url:
        yield url


async def open_conversation(settings, tenant) -> tuple[str, uuid.UUID, str]:
    """An API key and a WhatsApp conversation whose 24 h window is open."""
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            _, key = await issue_api_key(conn, tenant.id, "e2e")
            wa_id = f"521{uuid.uuid4().int % 10**10:010d}"
            lead_id = await conn.fetchval(
                """INSERT INTO leads (tenant_id, channel, platform_user_id, name, last_inbound_at)
                   VALUES ($1, 'whatsapp', $2, 'Ana', now()) RETURNING id""", tenant.id, wa_id)
            conv_id = await conn.fetchval(
                """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                              last_inbound_at)
                   VALUES ($1, $2, 'whatsapp', $3, now()) RETURNING id""",
                tenant.id, lead_id, tenant.whatsapp_phone_number_id)
    finally:
        await conn.close()
    return key, conv_id, wa_id


async def test_agent_message_and_n8n_answer_reach_the_patient(
    settings, sandbox_url, own_vhost, make_tenant, app_pool
):
    tenant = await make_tenant()
    key, conv_id, wa_id = await open_conversation(settings, tenant)
    platforms = {"graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url}
    settings = settings.model_copy(update={"rabbitmq_url": own_vhost})
    async with AsyncSandboxClient(sandbox_url) as sandbox, \
            running(start_ingress, settings, cron_secret=CRON) as ingress, \
            running(start_dispatcher, settings, **platforms):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            agent = await http.post(f"/api/v1/conversations/{conv_id}/messages",
                                    json={"text": "Hola Ana, soy la Dra. Ruiz"},
                                    headers={"Authorization": f"Bearer {key}"})
            assert agent.status_code == 202
            n8n = await http.post("/api/webhook", headers={"Authorization": f"Bearer {CRON}"}, json={
                "action": "ai_response", "conversation_id": str(conv_id),
                "content": "¿Le acomoda el martes a las 10?", "model": "claude-3-opus", "tokens": 150})
            assert n8n.status_code == 202
            sent = await sandbox.wait_for("whatsapp", recipient=wa_id, count=2, within=10)
    assert sorted(r["json"]["text"]["body"] for r in sent) == [
        "Hola Ana, soy la Dra. Ruiz", "¿Le acomoda el martes a las 10?"]

    async def stored():
        async with tenant_tx(app_pool, tenant.id) as conn:
            rows = await conn.fetch("SELECT sender_type, purpose, content, status FROM messages "
                                    "WHERE conversation_id = $1 ORDER BY sender_type", conv_id)
        return [tuple(r) for r in rows] if all(r["status"] == "sent" for r in rows) else None

    assert await eventually(stored) == [
        ("agent", "agent", "Hola Ana, soy la Dra. Ruiz", "sent"),
        ("ai", "reply", "¿Le acomoda el martes a las 10?", "sent"),
    ]
