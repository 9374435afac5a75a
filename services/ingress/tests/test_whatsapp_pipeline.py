"""A signed WhatsApp text message crosses the real ingress, RabbitMQ and the AI responder into
PostgreSQL; bad input is refused with the right code and publishes nothing."""

import asyncio
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import eventually, running
from tistis_ingress.main import start as start_ingress


def whatsapp_text(phone_number_id: str, wamid: str, sender: str = "5215512345678",
                  text: str = "Hola, quiero una cita para limpieza") -> bytes:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "200000000000001",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550000000",
                                 "phone_number_id": phone_number_id},
                    "contacts": [{"profile": {"name": "María García"}, "wa_id": sender}],
                    "messages": [{"from": sender, "id": wamid, "timestamp": str(int(time.time())),
                                  "type": "text", "text": {"body": text}}],
                },
            }],
        }],
    }
    return json.dumps(payload).encode()


def signed(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


@pytest.fixture
async def pipeline(settings):
    async with running(start_ingress, settings) as ingress, running(start_ai_responder, settings):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            yield http


async def stored_messages(pool, tenant_id):
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetch(
            """SELECT m.content, m.platform_message_id, l.name, l.phone, c.channel
               FROM messages m JOIN leads l ON l.id = m.lead_id
               JOIN conversations c ON c.id = m.conversation_id"""
        )


class TestWhatsAppTextMessage:
    async def test_signed_message_is_stored_as_lead_conversation_and_message(
        self, pipeline, settings, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        body = whatsapp_text(tenant.whatsapp_phone_number_id, f"wamid.{uuid.uuid4().hex}")
        answer = await pipeline.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                     headers=signed(body, settings.meta_app_secret))
        assert answer.status_code == 200
        rows = await eventually(lambda: stored_messages(app_pool, tenant.id))
        assert [(r["content"], r["name"], r["phone"], r["channel"]) for r in rows] == [
            ("Hola, quiero una cita para limpieza", "María García", "+5215512345678", "whatsapp")
        ]

    async def test_duplicate_delivery_is_stored_once(self, pipeline, settings, app_pool, make_tenant):
        tenant = await make_tenant()
        body = whatsapp_text(tenant.whatsapp_phone_number_id, f"wamid.{uuid.uuid4().hex}")
        for _ in range(3):
            answer = await pipeline.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                         headers=signed(body, settings.meta_app_secret))
            assert answer.status_code == 200
        await eventually(lambda: stored_messages(app_pool, tenant.id))
        # A later, different message proves the duplicates were consumed, not just pending.
        later = whatsapp_text(tenant.whatsapp_phone_number_id, f"wamid.{uuid.uuid4().hex}", text="¿?")
        await pipeline.post(f"/api/webhook/whatsapp/{tenant.slug}", content=later,
                            headers=signed(later, settings.meta_app_secret))

        async def two_rows():
            rows = await stored_messages(app_pool, tenant.id)
            return rows if len(rows) >= 2 else None

        rows = await eventually(two_rows)
        assert len(rows) == 2


class TestBadInput:
    async def test_forged_signature_is_refused_and_stores_nothing(
        self, pipeline, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        body = whatsapp_text(tenant.whatsapp_phone_number_id, f"wamid.{uuid.uuid4().hex}")
        for headers in (signed(body, "not-the-secret"), {"Content-Type": "application/json"}):
            answer = await pipeline.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                         headers=headers)
            assert answer.status_code == 401
        # Give a wrongly published event time to arrive, then prove nothing did.
        await pipeline.get("/healthz")
        await asyncio.sleep(0.5)
        assert await stored_messages(app_pool, tenant.id) == []

    async def test_unknown_tenant_is_404(self, pipeline, settings):
        body = whatsapp_text("1", "wamid.x")
        answer = await pipeline.post("/api/webhook/whatsapp/no-such-clinic", content=body,
                                     headers=signed(body, settings.meta_app_secret))
        assert answer.status_code == 404

    async def test_body_that_is_not_json_is_400(self, pipeline, settings, make_tenant):
        tenant = await make_tenant()
        body = b"{not json"
        answer = await pipeline.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                     headers=signed(body, settings.meta_app_secret))
        assert answer.status_code == 400

    async def test_refusals_are_counted_by_outcome(self, pipeline, make_tenant):
        tenant = await make_tenant()
        await pipeline.post(f"/api/webhook/whatsapp/{tenant.slug}", content=b"{}")
        text = (await pipeline.get("/metrics")).text
        assert 'tistis_webhooks_total{channel="whatsapp",outcome="bad_signature"}' in text


class TestVerification:
    async def test_matching_verify_token_echoes_the_challenge(self, pipeline, make_tenant):
        tenant = await make_tenant()
        answer = await pipeline.get(
            f"/api/webhook/whatsapp/{tenant.slug}",
            params={"hub.mode": "subscribe", "hub.verify_token": f"verify-{tenant.slug[7:]}",
                    "hub.challenge": "1158201444"},
        )
        assert (answer.status_code, answer.text) == (200, "1158201444")

    async def test_env_verify_token_works_for_whatsapp(self, pipeline, settings, make_tenant):
        tenant = await make_tenant()
        answer = await pipeline.get(
            f"/api/webhook/whatsapp/{tenant.slug}",
            params={"hub.mode": "subscribe", "hub.verify_token": settings.whatsapp_verify_token,
                    "hub.challenge": "42"},
        )
        assert (answer.status_code, answer.text) == (200, "42")

    async def test_wrong_verify_token_is_403(self, pipeline, make_tenant):
        tenant = await make_tenant()
        answer = await pipeline.get(
            f"/api/webhook/whatsapp/{tenant.slug}",
            params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        )
        assert answer.status_code == 403
