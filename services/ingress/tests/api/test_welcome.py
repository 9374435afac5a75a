"""Staff contacting a WhatsApp patient first: the message carries the guide's `bienvenida_esva`
as its fallback template (sent instead once the dispatcher finds no window open); a patient who
wrote before gets none."""

from __future__ import annotations

from tistis_common.db import tenant_tx


class TestWelcome:
    async def test_first_contact_falls_back_to_bienvenida_esva(self, ingress, keyed_tenant, tap):
        t = await keyed_tenant()  # the lead never wrote: last_inbound_at is NULL
        answer = await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages",
                                    json={"text": "Hola María, te escribe la clínica"},
                                    headers=t.auth)
        assert answer.status_code == 202
        [event] = await tap.events(1)
        assert event["fallback_template"] == {"name": "bienvenida_esva", "language": "es_MX",
                                              "body_params": ["María"], "button_payloads": []}

    async def test_a_patient_who_wrote_gets_no_welcome(self, ingress, keyed_tenant, tap, app_pool):
        t = await keyed_tenant()
        async with tenant_tx(app_pool, t.tenant.id) as conn:
            await conn.execute("UPDATE conversations SET last_inbound_at = now() - interval '3 days'")
        await ingress.post(f"/api/v1/conversations/{t.conversation_id}/messages",
                           json={"text": "¿Sigues interesada?"}, headers=t.auth)
        [event] = await tap.events(1)
        assert event["fallback_template"] is None
