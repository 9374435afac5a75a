"""Every operator API route and the legacy callback with another tenant's key, no key, a forged
key and injected input: nothing of tenant A reaches tenant B, nothing is written, no 5xx."""

from __future__ import annotations

import uuid

import httpx
import pytest
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, scope, tenant_tx
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress

from .test_webhook_attacks import INJECTIONS

CRON = "security-cron-secret"


@pytest.fixture
async def api(settings):
    async with running(start_ingress, settings, cron_secret=CRON) as ingress:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}", timeout=10) as http:
            yield http


async def keyed(settings, make_tenant) -> tuple:
    """A tenant with an API key and one lead with a conversation."""
    tenant = await make_tenant()
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            _, key = await issue_api_key(conn, tenant.id, "security")
            await scope(conn, tenant.id)
            lead = await conn.fetchval(
                """INSERT INTO leads (tenant_id, channel, platform_user_id, name, classification)
                   VALUES ($1, 'whatsapp', $2, 'Secreto', 'hot') RETURNING id""",
                tenant.id, f"521{uuid.uuid4().int % 10**10:010d}")
            conversation = await conn.fetchval(
                """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id)
                   VALUES ($1, $2, 'whatsapp', $3) RETURNING id""",
                tenant.id, lead, tenant.whatsapp_phone_number_id)
    finally:
        await conn.close()
    return tenant, key, lead, conversation


def routes(conversation: uuid.UUID) -> list[tuple[str, str, dict | None]]:
    c = f"/api/v1/conversations/{conversation}"
    return [
        ("GET", "/api/v1/integrations", None),
        ("GET", "/api/v1/leads?band=hot", None),
        ("GET", c, None),
        ("POST", f"{c}/messages", {"text": "Hola desde otra clínica"}),
        ("POST", f"{c}/ai-reply", {}),
        ("POST", f"{c}/escalate", {"reason": "prueba"}),
        ("POST", f"{c}/release", {}),
    ]


class TestOperatorApi:
    async def test_another_tenants_key_gets_nothing_of_tenant_a(self, api, settings, make_tenant,
                                                               app_pool, attack):
        victim, _, victim_lead, victim_conv = await keyed(settings, make_tenant)
        _attacker, attacker_key, _, _ = await keyed(settings, make_tenant)
        auth = {"Authorization": f"Bearer {attacker_key}"}
        for method, path, body in routes(victim_conv):
            answer = await api.request(method, path, json=body, headers=auth)
            leaked = (str(victim_lead) in answer.text or str(victim.id) in answer.text
                      or ("Secreto" in answer.text and "/leads" not in path))
            got_through = leaked or answer.status_code >= 500 or (
                "/conversations/" in path and answer.status_code != 404)
            attack("operator API with another tenant's key", got_through)
            assert not got_through, (method, path, answer.status_code, answer.text[:200])
        leads = (await api.get("/api/v1/leads", headers=auth)).json()["leads"]
        assert {lead["id"] for lead in leads}.isdisjoint({str(victim_lead)})
        async with tenant_tx(app_pool, victim.id) as conn:
            assert await conn.fetchval("SELECT count(*) FROM messages") == 0
            assert await conn.fetchval(
                "SELECT status FROM conversations WHERE id = $1", victim_conv) == "active"

    async def test_no_key_forged_key_and_injected_keys_are_401(self, api, settings, make_tenant, attack):
        _, key, _, conversation = await keyed(settings, make_tenant)
        forged = key[:-1] + ("A" if key[-1] != "A" else "B")
        bad_headers = [None, "Bearer", "Basic dXNlcjpwYXNz", f"Bearer {forged}", forged,
                       *(f"Bearer {i}" for i in INJECTIONS)]
        for method, path, body in routes(conversation):
            for bad in bad_headers:
                headers = {} if bad is None else {"Authorization": bad}
                answer = await api.request(method, path, json=body, headers=headers)
                attack("operator API without a valid key", answer.status_code != 401)
                assert answer.status_code == 401, (method, path, bad, answer.status_code)

    async def test_injection_in_parameters_and_ids_is_a_clean_4xx(self, api, settings, make_tenant,
                                                                  attack):
        _, key, _, _ = await keyed(settings, make_tenant)
        auth = {"Authorization": f"Bearer {key}"}
        for text in INJECTIONS:
            for method, path in (("GET", f"/api/v1/leads?band={text}"),
                                 ("GET", f"/api/v1/leads?limit={text}"),
                                 ("GET", f"/api/v1/conversations/{text}"),
                                 ("POST", f"/api/v1/conversations/{text}/escalate")):
                answer = await api.request(method, path, headers=auth, json={"reason": text})
                attack("operator API injection", not 400 <= answer.status_code < 500)
                assert 400 <= answer.status_code < 500, (path, answer.status_code)


class TestLegacyCallback:
    async def test_callback_without_the_cron_secret_is_401(self, api, settings, make_tenant, attack):
        _, _, lead, conversation = await keyed(settings, make_tenant)
        bodies = [{"action": "ai_response", "conversation_id": str(conversation), "content": "x"},
                  {"action": "update_lead_score", "lead_id": str(lead), "score": 99},
                  {"action": "escalate_conversation", "conversation_id": str(conversation),
                   "reason": "x"}]
        for body in bodies:
            for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": CRON},
                         *({"Authorization": f"Bearer {i}"} for i in INJECTIONS)):
                answer = await api.post("/api/webhook", json=body, headers=auth)
                attack("legacy callback without the secret", answer.status_code != 401)
                assert answer.status_code == 401, (body["action"], auth, answer.status_code)
