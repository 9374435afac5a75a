"""The legacy callback (the integration guide's n8n "Webhook Callback Actions") under retries
and collisions. The consumers drop an event id they already processed
(`processed_events (consumer, event_id)`), so the event id decides what reaches the patient:
  - the same Idempotency-Key from two tenants must be two events (one tenant's reply was
    dead-lettered as the other's duplicate);
  - a retry without a key (n8n's "Retry On Fail" re-sends the same body) must be one event, the
    same action on purpose after the window a new one;
  - schedule_appointment naming a conversation that is not the lead's is refused, not a 202
    whose confirmation goes nowhere."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from tistis_common.db import connect, scope
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress

from .test_api_attacks import CRON, keyed

AUTH = {"Authorization": f"Bearer {CRON}"}


@pytest.fixture
async def callback(settings):
    async with running(start_ingress, settings, cron_secret=CRON,
                       callback_dedup_window_hours=1 / 3600) as ingress:  # a window of 1 s
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}", timeout=10) as http:
            yield http


async def post(http: httpx.AsyncClient, body: dict, key: str | None = None) -> httpx.Response:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    return await http.post("/api/webhook", json=body, headers=headers)


def ai_response(conversation: uuid.UUID, text: str = "Su cita quedó el martes a las 10:00") -> dict:
    return {"action": "ai_response", "conversation_id": str(conversation), "content": text}


async def add_branch(settings, tenant_id: uuid.UUID) -> uuid.UUID:
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await scope(conn, tenant_id)
            return await conn.fetchval(
                "INSERT INTO branches (tenant_id, name) VALUES ($1, $2) RETURNING id", tenant_id,
                f"Sucursal {uuid.uuid4().hex[:6]}")
    finally:
        await conn.close()


class TestCallbackIdempotency:
    async def test_the_same_idempotency_key_of_two_tenants_is_two_events(self, callback, settings,
                                                                         make_tenant, attack):
        _, _, _, conv_a = await keyed(settings, make_tenant)
        _, _, _, conv_b = await keyed(settings, make_tenant)
        a = await post(callback, ai_response(conv_a), key="n8n-execution-1")
        b = await post(callback, ai_response(conv_b), key="n8n-execution-1")
        assert (a.status_code, b.status_code) == (202, 202)
        collided = a.json()["event_id"] == b.json()["event_id"]
        attack("callback idempotency key collides across tenants", collided)
        assert not collided

    async def test_a_retry_without_a_key_is_one_event_and_after_the_window_a_new_one(
            self, callback, settings, make_tenant, attack):
        _, _, lead, conv = await keyed(settings, make_tenant)
        for body in (ai_response(conv), {"action": "update_lead_score", "lead_id": str(lead), "score": 80},
                     {"action": "escalate_conversation", "conversation_id": str(conv),
                      "reason": "dolor"}):
            first, retry = await post(callback, body), await post(callback, body)
            assert (first.status_code, retry.status_code) == (202, 202), retry.text
            doubled = first.json()["event_id"] != retry.json()["event_id"]
            attack("callback retried without a key is sent twice", doubled)
            assert not doubled, body["action"]
        other = await post(callback, ai_response(conv, "Otro texto"))
        assert other.json()["event_id"] != first.json()["event_id"]
        # Past the window (1 s here, 24 h by default) the same text is meant again: it goes.
        await asyncio.sleep(1.2)
        later = await post(callback, ai_response(conv))
        assert later.json()["event_id"] not in (first.json()["event_id"], retry.json()["event_id"])

    async def test_the_same_text_to_two_tenants_without_a_key_is_two_events(
            self, callback, settings, make_tenant, attack):
        _, _, _, conv_a = await keyed(settings, make_tenant)
        _, _, _, conv_b = await keyed(settings, make_tenant)
        a, b = await post(callback, ai_response(conv_a)), await post(callback, ai_response(conv_b))
        collided = a.json()["event_id"] == b.json()["event_id"]
        attack("callback content id collides across tenants", collided)
        assert not collided


class TestScheduleAppointmentConversation:
    async def test_a_conversation_of_another_tenant_or_lead_is_refused(self, callback, settings,
                                                                       make_tenant, attack):
        tenant, _, lead, conv = await keyed(settings, make_tenant)
        _, _, _, foreign_conv = await keyed(settings, make_tenant)
        branch = await add_branch(settings, tenant.id)
        body = {"action": "schedule_appointment", "lead_id": str(lead), "branch_id": str(branch),
                "scheduled_at": "2030-03-04T10:00:00-06:00"}
        assert (await post(callback, {**body, "conversation_id": str(conv)})).status_code == 202
        # another lead of the same tenant, with a conversation of its own
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                await scope(conn, tenant.id)
                other_lead = await conn.fetchval(
                    """INSERT INTO leads (tenant_id, channel, platform_user_id, name)
                       VALUES ($1, 'whatsapp', $2, 'Otra') RETURNING id""",
                    tenant.id, f"521{uuid.uuid4().int % 10**10:010d}")
                other_conv = await conn.fetchval(
                    """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id)
                       VALUES ($1, $2, 'whatsapp', $3) RETURNING id""",
                    tenant.id, other_lead, tenant.whatsapp_phone_number_id)
        finally:
            await conn.close()
        for conversation, expected in ((foreign_conv, 404), (uuid.uuid4(), 404), (other_conv, 422)):
            answer = await post(callback, {**body, "conversation_id": str(conversation)})
            attack("schedule_appointment with a conversation not the lead's",
                   answer.status_code != expected)
            assert answer.status_code == expected, (conversation, answer.status_code, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
