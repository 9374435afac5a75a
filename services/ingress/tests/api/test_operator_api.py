"""Operator API at the real ingress: a tenant key reads and acts on its own tenant only."""

from __future__ import annotations

import uuid

import pytest
from tistis_common.admin import revoke_api_key
from tistis_common.db import connect, scope


class TestAuthentication:
    @pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer", "tt_xyz"])
    async def test_missing_or_wrong_key_is_401(self, ingress, header):
        headers = {"Authorization": header} if header is not None else {}
        answer = await ingress.get("/api/v1/integrations", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"

    async def test_wrong_key_with_a_bad_body_is_still_401(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages",
                                    json={"nope": 1}, headers={"Authorization": "Bearer tt_wrong"})
        assert answer.status_code == 401
        assert await tap.nothing()

    async def test_revoked_key_is_401(self, ingress, keyed_tenant, settings):
        t = await keyed_tenant()
        assert (await ingress.get("/api/v1/integrations", headers=t.auth)).status_code == 200
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                await scope(conn, t.tenant.id)
                key_id = await conn.fetchval("SELECT id FROM api_keys")
                assert await revoke_api_key(conn, t.tenant.id, key_id)
        finally:
            await conn.close()
        assert (await ingress.get("/api/v1/integrations", headers=t.auth)).status_code == 401


class TestReads:
    async def test_integration_status_per_channel(self, ingress, keyed_tenant, settings):
        t = await keyed_tenant()
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                await scope(conn, t.tenant.id)
                await conn.execute(
                    """UPDATE channel_connections SET healthy = false, last_error = 'token expired (190)',
                         last_error_at = now() WHERE channel = 'tiktok'""")
                await conn.execute(
                    "UPDATE channel_connections SET enabled = false WHERE channel = 'facebook'")
        finally:
            await conn.close()
        status = (await ingress.get("/api/v1/integrations", headers=t.auth)).json()
        assert status["whatsapp"] == {"configured": True, "healthy": True, "accounts": 1,
                                      "last_error": None, "last_error_at": None}
        assert status["tiktok"]["configured"] is True
        assert status["tiktok"]["healthy"] is False
        assert status["tiktok"]["last_error"] == "token expired (190)"
        assert status["facebook"]["configured"] is False
        assert status["instagram"]["healthy"] is True

    async def test_leads_by_band(self, ingress, keyed_tenant):
        t = await keyed_tenant(classification="hot", score=80)
        hot = (await ingress.get("/api/v1/leads", params={"band": "hot"}, headers=t.auth)).json()
        assert [lead["id"] for lead in hot["leads"]] == [str(t.lead_id)]
        assert hot["leads"][0]["score"] == 80
        cold = (await ingress.get("/api/v1/leads", params={"band": "cold"}, headers=t.auth)).json()
        assert cold["leads"] == []
        everyone = (await ingress.get("/api/v1/leads", headers=t.auth)).json()
        assert len(everyone["leads"]) == 1

    async def test_conversation_with_its_messages_in_order(self, ingress, keyed_tenant):
        t = await keyed_tenant()
        body = (await ingress.get(f"/api/v1/conversations/{t.conversation_id}", headers=t.auth)).json()
        assert body["conversation"]["id"] == str(t.conversation_id)
        assert body["conversation"]["status"] == "active"
        assert [(m["sender_type"], m["content"]) for m in body["messages"]] == [
            ("lead", "Hola, quiero una cita"), ("ai", "¡Claro! ¿Qué día?")]

    async def test_unknown_conversation_is_404(self, ingress, keyed_tenant):
        t = await keyed_tenant()
        answer = await ingress.get(f"/api/v1/conversations/{uuid.uuid4()}", headers=t.auth)
        assert answer.status_code == 404


class TestActions:
    async def test_agent_message_becomes_outbound_message(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages",
                                    json={"text": "Soy la Dra. Ruiz, la llamo en 5 min"}, headers=t.auth)
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert event["routing_key"] == "message.outbound.whatsapp"
        assert event["type"] == "message.outbound"
        assert (event["sender_type"], event["purpose"], event["text"]) == (
            "agent", "agent", "Soy la Dra. Ruiz, la llamo en 5 min")
        assert event["message_id"] == answer.json()["message_id"]
        assert event["recipient_id"] == t.platform_user_id
        assert event["tenant_id"] == str(t.tenant.id)
        assert event["lead_id"] == str(t.lead_id)

    async def test_agent_message_with_client_id_is_idempotent(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        body = {"text": "hola", "client_message_id": "ui-42"}
        first = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages", json=body,
                                   headers=t.auth)
        again = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages", json=body,
                                   headers=t.auth)
        assert first.json() == again.json()
        events = await tap.events(2)
        assert events[0]["event_id"] == events[1]["event_id"]

    async def test_ai_reply_request(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/ai-reply", headers=t.auth)
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert (event["type"], event["conversation_id"]) == (
            "conversation.reply_requested", str(t.conversation_id))

    async def test_escalate_and_release(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/escalate",
                                    json={"reason": "Customer requested human agent"}, headers=t.auth)
        assert answer.status_code == 202
        back = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/release", headers=t.auth)
        assert back.status_code == 202
        escalated, released = await tap.events(2)
        assert (escalated["type"], escalated["source"], escalated["reason"], escalated["lead_id"]) == (
            "conversation.escalated", "api", "Customer requested human agent", str(t.lead_id))
        assert (released["type"], released["conversation_id"]) == (
            "conversation.released", str(t.conversation_id))


class TestBadInput:
    @pytest.mark.parametrize("body,field", [
        ({}, "text"), ({"text": ""}, "text"), ({"text": "x" * 5000}, "text"),
        ({"text": "hi", "extra": 1}, "extra"), ({"text": "a\x00b"}, "text"),
    ])
    async def test_bad_message_body_is_422_naming_the_field(self, ingress, keyed_tenant, tap, body, field):
        t = await keyed_tenant()
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages", json=body,
                                    headers=t.auth)
        assert answer.status_code == 422
        assert field in [err["loc"][-1] for err in answer.json()["errors"]]
        assert await tap.nothing()

    async def test_bad_ids_and_params_are_422(self, ingress, keyed_tenant):
        t = await keyed_tenant()
        assert (await ingress.get("/api/v1/conversations/not-a-uuid", headers=t.auth)).status_code == 422
        answer = await ingress.get("/api/v1/leads", params={"band": "boiling"}, headers=t.auth)
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["loc"] == ["query", "band"]
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/escalate",
                                    content=b"{not json",
                                    headers={**t.auth, "Content-Type": "application/json"})
        assert answer.status_code == 422


class TestTenantIsolation:
    async def test_key_of_tenant_b_gets_nothing_of_tenant_a(self, ingress, keyed_tenant, tap):
        a = await keyed_tenant(classification="hot", score=90)
        b = await keyed_tenant(classification="hot", score=90)
        conv_a = f"/api/v1/conversations/{a.conversation_id}"
        as_b = b.auth
        assert (await ingress.get(conv_a, headers=as_b)).status_code == 404
        for action, body in (("messages", {"text": "hola"}), ("ai-reply", None),
                             ("escalate", {"reason": "x"}), ("release", None)):
            answer = await ingress.post(f"{conv_a}/{action}", json=body, headers=as_b)
            assert answer.status_code == 404, action
        leads = (await ingress.get("/api/v1/leads", params={"band": "hot"}, headers=as_b)).json()["leads"]
        assert [lead["id"] for lead in leads] == [str(b.lead_id)]
        assert await tap.nothing()
