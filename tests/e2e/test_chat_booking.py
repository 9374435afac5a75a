"""In the sandbox, a chat message asking for an appointment ends with a booked row and the
`cita_confirmada` template at the fake WhatsApp API: ingress -> ai-responder (fake Claude
asking for the booking) -> scheduler -> dispatcher -> fake Cloud API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import AsyncSandboxClient, running_sandbox
from tistis_sandbox import webhooks as wh
from tistis_scheduler.main import start as start_scheduler


def next_weekday(after: date) -> date:
    day = after + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


async def test_a_chat_message_asking_for_an_appointment_ends_booked_and_confirmed(
    settings, make_tenant, app_pool
):
    tenant = await make_tenant()
    day = next_weekday(datetime.now(ZoneInfo("America/Mexico_City")).date())
    patient = "5215512340000"
    with running_sandbox() as sandbox_url:
        async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
            s = s.model_copy(update={
                "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
                "anthropic_base_url": sandbox_url, "anthropic_api_key": "sk-ant-sandbox",
                "ai_debounce_seconds": 0.2, "scheduler_tick_seconds": 0,
            })
            await sandbox.script("anthropic", {"tool_calls": [
                {"name": "reply_to_patient",
                 "input": {"text": "¡Claro! Te agendo una limpieza dental en Centro."}},
                {"name": "record_interest", "input": {"signals": ["interested"]}},
                {"name": "book_appointment", "input": {
                    "service": "limpieza dental", "branch": "Centro",
                    "preferred_dates": [day.isoformat()]}},
            ]})
            async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
                    running(start_scheduler, s), running(start_dispatcher, s):
                payload = wh.whatsapp_payload(
                    [wh.wa_text(patient, f"Hola, quiero una cita para limpieza el {day:%d/%m}")],
                    phone_number_id=tenant.whatsapp_phone_number_id)
                body, headers = wh.sign_meta(payload, s.meta_app_secret)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
                    answer = await http.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                             headers=headers)
                assert answer.status_code == 200

                async def confirmation():
                    sent = await sandbox.requests("whatsapp", patient)
                    return [r for r in sent if (r["json"] or {}).get("type") == "template"]

                [template] = await eventually(confirmation, timeout=20)
    assert template["json"]["template"]["name"] == "cita_confirmada"
    async with tenant_tx(app_pool, tenant.id) as conn:
        booked = await conn.fetch("SELECT scheduled_at, status FROM appointments")
    assert len(booked) == 1 and booked[0]["status"] == "booked"
    local = booked[0]["scheduled_at"].astimezone(ZoneInfo("America/Mexico_City"))
    assert local.date() == day and booked[0]["scheduled_at"] > datetime.now(UTC)
