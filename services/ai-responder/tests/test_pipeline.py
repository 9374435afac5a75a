"""Through the real ingress: a signed WhatsApp webhook, delivered twice as Meta retries,
becomes one stored message and one AI reply; and two responder replicas answer a burst once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import httpx
from prometheus_client import REGISTRY
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.admin import load_tenant, read_fixture
from tistis_common.db import connect, tenant_tx
from tistis_common.secrets import SecretBox
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress
from tistis_sandbox.webhooks import sign_meta, wa_text, whatsapp_payload

ALWAYS_OPEN = {"ai_context": {"business_hours": {
    "timezone": "UTC", **{d: [["00:00", "23:59"]] for d in
                         ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}}}


class TestThroughIngress:
    async def test_same_webhook_twice_gives_one_reply(self, settings, ai_settings, bus, sandbox,
                                                      app_pool, make_tenant):
        tenant = await make_tenant(ALWAYS_OPEN)
        payload = whatsapp_payload([wa_text("5215598765432", "Hola, ¿hacen limpiezas?")],
                                   phone_number_id=tenant.whatsapp_phone_number_id)
        body, headers = sign_meta(payload, settings.meta_app_secret)
        async with running(start_ingress, settings) as ingress, \
                running(start_ai_responder, settings, **ai_settings):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
                for _ in range(2):
                    answer = await http.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                             headers=headers)
                    assert answer.status_code == 200
            outs = await bus.wait(tenant.id, "message.outbound")
            await asyncio.sleep(0.5)  # a second delivery, if any, has been handled by now
            outs = await bus.events(tenant.id, "message.outbound")
        assert len({o.message_id for o in outs}) == 1
        assert outs[0].recipient_id == "5215598765432" and outs[0].text
        assert len(await sandbox.requests("anthropic")) == 1
        async with tenant_tx(app_pool, tenant.id) as conn:
            counts = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE direction = 'inbound') AS inbound,
                          count(*) FILTER (WHERE direction = 'outbound') AS outbound FROM messages""")
        assert (counts["inbound"], counts["outbound"]) == (1, 1)
        # the metrics name the clinic by its slug, not its UUID
        assert REGISTRY.get_sample_value("tistis_ai_replies_total",
                                         {"tenant": tenant.slug, "outcome": "ai"}) == 1
        assert REGISTRY.get_sample_value("tistis_ai_tokens_total",
                                         {"tenant": tenant.slug, "kind": "output"})


class TestTwoReplicas:
    async def test_two_replicas_answer_a_burst_once(self, settings, ai_settings, bus, sandbox,
                                                    make_tenant, patient_message):
        tenant = await make_tenant(ALWAYS_OPEN)
        overrides = {**ai_settings, "ai_debounce_seconds": 0.6}
        async with running(start_ai_responder, settings, **overrides), \
                running(start_ai_responder, settings, **overrides):
            messages = [patient_message(tenant, f"mensaje {i}") for i in range(3)]
            for message in messages:
                await bus.publish(message)
            for message in messages:  # and each one redelivered, as after a crash
                await bus.publish(message)
            await bus.wait(tenant.id, "message.outbound")
            await asyncio.sleep(1.0)
            outs = await bus.events(tenant.id, "message.outbound")
        assert len({o.message_id for o in outs}) == 1
        assert len(await sandbox.requests("anthropic")) == 1


class TestDemoWithoutKey:
    async def test_demo_clinic_answers_the_sample_message_with_the_marked_fallback(
        self, settings, ai_settings, bus, app_pool, patient_message
    ):
        """What `make run` shows without ANTHROPIC_API_KEY: the demo tenant's FAQ answers."""
        doc = read_fixture(Path(__file__).parents[3] / "fixtures" / "esva-dental.yaml")
        conn = await connect(settings.migration_database_url)
        try:
            tenant_id = await load_tenant(conn, doc, SecretBox(settings.secrets_keys))
        finally:
            await conn.close()
        whatsapp = next(c for c in doc["connections"] if c["channel"] == "whatsapp")
        tenant = SimpleNamespace(id=tenant_id,
                                 whatsapp_phone_number_id=str(whatsapp["platform_account_id"]))
        no_key = {**ai_settings, "anthropic_api_key": None}
        async with running(start_ai_responder, settings, **no_key):
            await bus.publish(patient_message(tenant, "Hola, quiero una cita para limpieza",
                                              user="5215511112222"))
            [out] = await bus.wait(tenant_id, "message.outbound")
        assert out.text.startswith("La limpieza dental cuesta entre $600 y $900 MXN")
        async with tenant_tx(app_pool, tenant_id) as conn:
            reply = await conn.fetchrow("SELECT fallback, content FROM messages WHERE id = $1",
                                        out.message_id)
        assert reply["fallback"] is True and reply["content"] == out.text
