"""A patient message typed into the fake WhatsApp reaches the fake platform as the AI's reply:
signed webhook -> ingress -> RabbitMQ -> AI responder (fake Anthropic) -> dispatcher -> fake
Cloud API. Needs the AI responder's reply path (skipped where it is not merged yet)."""

from __future__ import annotations

import time

import httpx
import pytest
from tistis_common.testing.plugin import running

pytest.importorskip("tistis_ai_responder.service")
from tistis_ai_responder.main import start as start_ai_responder
from tistis_ingress.main import start as start_ingress
from tistis_sandbox.webhooks import sign_meta, wa_text, whatsapp_payload

ALWAYS_OPEN = {"ai_context": {"business_hours": {
    "timezone": "UTC", **{d: [["00:00", "23:59"]] for d in
                         ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}}}


async def test_a_patient_message_gets_the_ai_reply_on_the_platform(
    settings, dispatcher, sandbox, sandbox_url, make_tenant, clinic
):
    tenant = await make_tenant(ALWAYS_OPEN)
    patient = "5215598760001"
    payload = whatsapp_payload([wa_text(patient, "Hola, ¿hacen limpiezas dentales?")],
                               phone_number_id=tenant.whatsapp_phone_number_id)
    body, headers = sign_meta(payload, settings.meta_app_secret)
    ai = {"anthropic_api_key": "sk-ant-test", "anthropic_base_url": sandbox_url,
          "ai_debounce_seconds": 0.1}
    async with running(start_ingress, settings) as ingress, \
            running(start_ai_responder, settings, **ai):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            started = time.perf_counter()
            answer = await http.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                     headers=headers)
            assert answer.status_code == 200
            [reply] = await sandbox.wait_for("whatsapp", recipient=patient, within=10)
            print(f"patient message to platform reply: {time.perf_counter() - started:.3f}s")
    assert reply["json"]["type"] == "text" and reply["json"]["text"]["body"]
