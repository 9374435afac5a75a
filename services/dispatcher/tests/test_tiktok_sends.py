"""TikTok: text to the conversation id with the bare Access-Token; the window and the 10 per
day / 10 unanswered limits hold, also under concurrent sends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tistis_common.db import tenant_tx
from tistis_common.events import Button


class TestTikTokSends:
    async def test_text_goes_to_the_conversation(self, clinic, sandbox, make_tenant):
        tenant = await make_tenant()
        conv = await clinic.conversation(tenant, "tiktok")
        event = clinic.outbound(conv, text="¡Hola! ¿Te ayudo con una cita?")
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        [request] = await sandbox.wait_for("tiktok", recipient=conv.tiktok_conversation_id)
        assert request["json"] == {
            "business_id": tenant.tiktok_business_id, "recipient_type": "CONVERSATION",
            "recipient": conv.tiktok_conversation_id, "message_type": "TEXT",
            "text": {"body": "¡Hola! ¿Te ayudo con una cita?"}}
        assert request["path"] == "/open_api/v1.3/business/message/send/"
        assert row["platform_message_id"] == request["answered_id"]

    async def test_choices_become_numbered_text(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        event = clinic.outbound(conv, kind="buttons", text="¿Qué día?",
                                buttons=[Button(id="mon", title="Lunes"),
                                         Button(id="tue", title="Martes")])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [request] = await sandbox.wait_for("tiktok", recipient=conv.tiktok_conversation_id)
        assert request["json"]["text"]["body"] == "¿Qué día?\n\n1. Lunes\n2. Martes"

    async def test_the_11th_message_to_one_user_on_one_day_is_refused(self, clinic, sandbox,
                                                                       make_tenant):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        events = [clinic.outbound(conv, text=f"Mensaje {i}") for i in range(11)]
        for event in events[:10]:
            await clinic.publish(event)
            await clinic.until_status(conv, event.message_id, "sent")
        await clinic.publish(events[10])
        row = await clinic.until_status(conv, events[10].message_id, "blocked_window")
        assert row["error_title"] == "tiktok_message_limit"
        assert len(await sandbox.requests("tiktok", conv.tiktok_conversation_id)) == 10

    async def test_concurrent_sends_cannot_pass_the_limit(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        events = [clinic.outbound(conv, text=f"Mensaje {i}") for i in range(14)]
        await clinic.publish(*events)
        rows = await asyncio.gather(*(clinic.until_status(conv, e.message_id, "sent",
                                                          "blocked_window") for e in events))
        assert sorted(r["status"] for r in rows) == ["blocked_window"] * 4 + ["sent"] * 10
        assert len(await sandbox.requests("tiktok", conv.tiktok_conversation_id)) == 10

    async def test_a_new_patient_message_resets_the_count_and_there_is_no_daily_cap(
        self, clinic, sandbox, make_tenant
    ):
        """TikTok allows 10 messages until the user writes again; integrators document no
        calendar-day cap (documentation.qiscus.com/omnichannel-chat/tiktok-direct-message,
        help.chatfuel.com "Messaging rules for TikTok")."""
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
            # 10 sent earlier today, before the patient's last message
            await conn.execute(
                """INSERT INTO dispatcher_send_quota (tenant_id, lead_id, day, day_count,
                                                      streak_since, streak_count)
                   VALUES ($1, $2, (now() AT TIME ZONE 'America/Mexico_City')::date, 10,
                           now() - interval '1 day', 10)""",
                conv.tenant.id, conv.lead_id)
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")

    async def test_outside_the_default_24h_window_is_blocked(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "tiktok",
                                         last_inbound=timedelta(hours=30))
        event = clinic.outbound(conv)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "blocked_window")
        assert row["error_title"] == "tiktok_window"

    async def test_the_window_is_a_per_channel_setting(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "tiktok",
                                         last_inbound=timedelta(hours=30))
        async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
            await conn.execute("""UPDATE channel_connections SET settings = '{"window_hours": 48}'
                                  WHERE channel = 'tiktok'""")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")

    async def test_an_invalid_token_parks_the_message(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        await clinic.set_token(conv, "invalid-token")
        event = clinic.outbound(conv)
        await clinic.publish(event)

        async def unhealthy():
            return (await clinic.connection_row(conv))["healthy"] is False

        from tistis_common.testing.plugin import eventually
        await eventually(unhealthy)
        assert await clinic.status_of(conv, event.message_id) == "pending"
