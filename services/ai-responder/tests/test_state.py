"""What reaches the responder that is not a patient question: staff escalations and hand-backs,
marketing opt-outs, our own sends echoed back as "staff" messages, and slot choices."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from tistis_ai_responder.main import start
from tistis_common.events import Channel, ConversationEscalated, ConversationReleased, OptOutChanged
from tistis_common.testing.plugin import eventually, running

from .test_responder import OPEN_ALL_DAY, rows, tool_answer


@pytest.fixture
async def responder(settings, ai_settings, sandbox):
    async with running(start, settings, **ai_settings) as runtime:
        yield runtime


async def conversation(pool, tenant_id):
    found = await rows(pool, tenant_id, "SELECT id, status FROM conversations")
    return found[0] if found else None


class TestStaffDecisions:
    async def test_escalation_by_staff_stops_replies_and_release_brings_them_back(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", tool_answer("¡Hola! ¿En qué te ayudo?"))
        await bus.publish(patient_message(tenant, "Hola"))
        await bus.wait(tenant.id, "message.outbound")
        conv = await eventually(lambda: conversation(app_pool, tenant.id))

        await bus.publish(ConversationEscalated(tenant_id=tenant.id, conversation_id=conv["id"],
                                                reason="operadora", source="api"))

        async def status(expected):
            row = await conversation(app_pool, tenant.id)
            return row["status"] == expected

        await eventually(lambda: status("escalated"))
        await bus.publish(patient_message(tenant, "¿Siguen ahí?"))
        await asyncio.sleep(0.8)
        assert len(await bus.events(tenant.id, "message.outbound")) == 1

        await bus.publish(ConversationReleased(tenant_id=tenant.id, conversation_id=conv["id"]))
        await eventually(lambda: status("active"))
        await sandbox.script("anthropic", tool_answer("Aquí seguimos, ¿qué necesitas?"))
        await bus.publish(patient_message(tenant, "Quiero una cita"))
        await bus.wait(tenant.id, "message.outbound", count=2)


class TestOptOut:
    async def test_marketing_opt_out_and_resume_are_recorded_on_the_lead(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Hola"))
        await bus.wait(tenant.id, "message.outbound")

        def change(opted_out: bool) -> OptOutChanged:
            return OptOutChanged(tenant_id=tenant.id, channel=Channel.WHATSAPP,
                                 platform_account_id=tenant.whatsapp_phone_number_id,
                                 platform_user_id="5215512345678", opted_out=opted_out,
                                 changed_at=datetime.now(UTC))

        async def opted_out():
            [lead] = await rows(app_pool, tenant.id, "SELECT opted_out_at FROM leads")
            return lead["opted_out_at"]

        await bus.publish(change(True))
        await eventually(opted_out)
        await bus.publish(change(False))

        async def resumed():
            return await opted_out() is None

        await eventually(resumed)


class TestEchoesAndChoices:
    async def test_our_own_send_echoed_as_a_staff_message_does_not_pause_the_ai(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", tool_answer("Con gusto te ayudo."))
        await bus.publish(patient_message(tenant, "Hola", channel=Channel.TIKTOK, user="tt-1"))
        [reply] = await bus.wait(tenant.id, "message.outbound")
        # TikTok reports our API send back as `im_send_msg`: same text, same patient.
        await bus.publish(patient_message(tenant, reply.text, channel=Channel.TIKTOK, user="tt-1",
                                          sender_type="agent"))
        await asyncio.sleep(0.8)
        assert (await conversation(app_pool, tenant.id))["status"] == "active"
        # A real staff message from the app does pause it.
        await bus.publish(patient_message(tenant, "Soy la doctora, te escribo yo.",
                                          channel=Channel.TIKTOK, user="tt-1", sender_type="agent"))

        async def human():
            return (await conversation(app_pool, tenant.id))["status"] == "human"

        await eventually(human)

    async def test_a_chosen_slot_is_left_to_the_scheduler(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        choice = patient_message(tenant, "Lunes 10:00")
        choice = choice.model_copy(update={"kind": "interactive",
                                           "choice_id": "slot:b:s:2027-01-11T16:00Z"})
        await bus.publish(choice)

        async def stored():
            return await rows(app_pool, tenant.id, "SELECT 1 FROM messages WHERE direction = 'inbound'")

        await eventually(stored)
        await asyncio.sleep(0.8)
        assert await bus.events(tenant.id, "message.outbound") == []
        assert await sandbox.requests("anthropic") == []
