"""The legacy callback `POST /api/webhook` (the guide's four n8n actions) at the real ingress."""

from __future__ import annotations

import uuid

import pytest

from .conftest import CRON_SECRET

AUTH = {"Authorization": f"Bearer {CRON_SECRET}"}


class TestActions:
    async def test_ai_response_becomes_an_ai_outbound_message(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post("/api/webhook", headers=AUTH, json={
            "action": "ai_response", "conversation_id": str(t.conversation_id),
            "content": "¡Hola Juan! Claro, podemos agendar tu cita...", "model": "claude-3-opus",
            "tokens": 150})
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert event["routing_key"] == "message.outbound.whatsapp"
        assert (event["sender_type"], event["purpose"], event["text"]) == (
            "ai", "reply", "¡Hola Juan! Claro, podemos agendar tu cita...")
        assert (event["tenant_id"], event["conversation_id"], event["recipient_id"]) == (
            str(t.tenant.id), str(t.conversation_id), t.platform_user_id)

    async def test_update_lead_score_becomes_lead_score_set(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post("/api/webhook", headers=AUTH, json={
            "action": "update_lead_score", "lead_id": str(t.lead_id), "score": 75,
            "reason": "High engagement, interested in implants"})
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert (event["type"], event["lead_id"], event["score"], event["source"], event["reason"]) == (
            "lead.score_set", str(t.lead_id), 75, "legacy", "High engagement, interested in implants")

    async def test_schedule_appointment_becomes_appointment_requested(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post("/api/webhook", headers=AUTH, json={
            "action": "schedule_appointment", "lead_id": str(t.lead_id), "branch_id": str(t.branch_id),
            "scheduled_at": "2026-12-15T10:00:00-06:00"})
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert (event["type"], event["source"], event["branch_id"], event["action"]) == (
            "appointment.requested", "legacy", str(t.branch_id), "book")
        assert event["scheduled_at"].startswith("2026-12-15T10:00:00")

    async def test_escalate_conversation_becomes_conversation_escalated(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post("/api/webhook", headers=AUTH, json={
            "action": "escalate_conversation", "conversation_id": str(t.conversation_id),
            "reason": "Paciente molesto"})
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert (event["type"], event["source"], event["reason"], event["lead_id"]) == (
            "conversation.escalated", "legacy", "Paciente molesto", str(t.lead_id))

    async def test_retried_callback_with_idempotency_key_keeps_its_event_id(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        body = {"action": "update_lead_score", "lead_id": str(t.lead_id), "score": 40}
        headers = {**AUTH, "Idempotency-Key": "n8n-run-7"}
        first = await ingress.post("/api/webhook", headers=headers, json=body)
        again = await ingress.post("/api/webhook", headers=headers, json=body)
        assert first.json()["event_id"] == again.json()["event_id"]

    async def test_channel_webhook_path_still_reaches_the_platform_door(self, ingress, keyed_tenant):
        t = await keyed_tenant()
        answer = await ingress.get(f"/api/webhook/whatsapp/{t.tenant.slug}", params={
            "hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "42"})
        assert (answer.status_code, answer.text) == (200, "42")


class TestRefusals:
    @pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {CRON_SECRET}"])
    async def test_wrong_secret_is_401(self, ingress, keyed_tenant, tap, header):
        t = await keyed_tenant()
        headers = {"Authorization": header} if header else {}
        answer = await ingress.post("/api/webhook", headers=headers, json={
            "action": "escalate_conversation", "conversation_id": str(t.conversation_id), "reason": "x"})
        assert answer.status_code == 401
        assert await tap.nothing()

    @pytest.mark.parametrize("body,field", [
        ({"action": "ai_response", "content": "hola"}, "conversation_id"),
        ({"action": "ai_response", "conversation_id": "00000000-0000-0000-0000-000000000001"}, "content"),
        ({"action": "update_lead_score", "lead_id": "00000000-0000-0000-0000-000000000001"}, "score"),
        ({"action": "update_lead_score", "lead_id": "00000000-0000-0000-0000-000000000001",
          "score": 101}, "score"),
        ({"action": "schedule_appointment", "lead_id": "00000000-0000-0000-0000-000000000001",
          "branch_id": "00000000-0000-0000-0000-000000000001"}, "scheduled_at"),
        ({"action": "schedule_appointment", "lead_id": "00000000-0000-0000-0000-000000000001",
          "branch_id": "00000000-0000-0000-0000-000000000001", "scheduled_at": "2026-12-15T10:00:00"},
         "scheduled_at"),
        ({"action": "escalate_conversation", "conversation_id": "00000000-0000-0000-0000-000000000001"},
         "reason"),
        ({"action": "launch_rockets"}, "body"),
        ({"conversation_id": "00000000-0000-0000-0000-000000000001"}, "body"),
    ])
    async def test_missing_required_field_is_422_naming_it(self, ingress, body, field):
        answer = await ingress.post("/api/webhook", headers=AUTH, json=body)
        assert answer.status_code == 422, answer.text
        locs = [err["loc"] for err in answer.json()["errors"]]
        assert any(loc[-1] == field or (field == "body" and loc[0] == "body") for loc in locs), locs

    async def test_unknown_ids_are_404(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        for body in (
            {"action": "ai_response", "conversation_id": str(uuid.uuid4()), "content": "x"},
            {"action": "update_lead_score", "lead_id": str(uuid.uuid4()), "score": 1},
            {"action": "schedule_appointment", "lead_id": str(t.lead_id), "branch_id": str(uuid.uuid4()),
             "scheduled_at": "2026-12-15T10:00:00Z"},
        ):
            assert (await ingress.post("/api/webhook", headers=AUTH, json=body)).status_code == 404
        assert await tap.nothing()

    async def test_ids_of_another_tenant_are_404(self, ingress, keyed_tenant, tap):
        a = await keyed_tenant()
        b = await keyed_tenant()
        # tenant_id says B, the conversation is A's
        answer = await ingress.post("/api/webhook", headers=AUTH, json={
            "action": "escalate_conversation", "conversation_id": str(a.conversation_id),
            "reason": "x", "tenant_id": str(b.tenant.id)})
        assert answer.status_code == 404
        # A's lead with B's branch
        answer = await ingress.post("/api/webhook", headers=AUTH, json={
            "action": "schedule_appointment", "lead_id": str(a.lead_id), "branch_id": str(b.branch_id),
            "scheduled_at": "2026-12-15T10:00:00Z"})
        assert answer.status_code == 404
        assert await tap.nothing()
