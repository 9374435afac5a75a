"""Reminder buttons: the reminder carries confirm / reschedule / cancel where the tenant's
WhatsApp template declares them (quick replies on Messenger and Instagram), and each tap does
what it says. A template's quick-reply tap arrives as a `button` message whose payload is the
one sent with the template (sandbox.webhooks.wa_template_button)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tistis_common.db import tenant_tx
from tistis_common.events import Channel, InboundMessage
from tistis_scheduler.service import run_pass

MONDAY_9 = datetime(2027, 1, 11, 15, tzinfo=UTC)  # lunes 11 de enero, 09:00 in Mexico City
BUTTONS = {"templates": {"recordatorio_cita": {"buttons": ["confirm", "reschedule", "cancel"]}}}


async def declare_buttons(app_pool, tenant) -> None:
    async with tenant_tx(app_pool, tenant.id) as conn:
        await conn.execute("UPDATE channel_connections SET settings = settings || $1::jsonb "
                           "WHERE channel = 'whatsapp'", BUTTONS)


def tap(tenant, p, payload: str, clock) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant.id, channel=Channel(p.channel),
        platform_account_id=tenant.whatsapp_phone_number_id, platform_user_id=p.platform_user_id,
        platform_message_id=f"wamid.{uuid.uuid4().hex}", sent_at=clock(), kind="button",
        choice_id=payload, choice_title="tap",
    )


class TestReminderButtons:
    async def test_the_declared_template_buttons_carry_the_appointment_and_each_tap_works(
        self, scheduler, make_tenant, rows, bus, clock, deps_for, app_pool
    ):
        tenant = await make_tenant()
        await declare_buttons(app_pool, tenant)
        p = await rows.patient(tenant, last_inbound_at=MONDAY_9 - timedelta(days=3))
        appt = await rows.appointment(p, at=MONDAY_9, booked_at=MONDAY_9 - timedelta(days=7))
        clock.set(MONDAY_9 - timedelta(hours=23))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            [reminder] = await bus.events(tenant.id, at_least=1)
            assert reminder.template.name == "recordatorio_cita"
            assert reminder.template.button_payloads == [
                f"appt:confirm:{appt}", f"appt:reschedule:{appt}", f"appt:cancel:{appt}"]

            await runtime.publisher.publish(tap(tenant, p, f"appt:confirm:{appt}", clock))
            thanks = (await bus.events(tenant.id, at_least=2))[1]
            assert "quedó confirmada" in thanks.text
            assert await rows.val(tenant.id, "SELECT confirmed_at FROM appointments") == clock()

            await runtime.publisher.publish(tap(tenant, p, f"appt:reschedule:{appt}", clock))
            offer = (await bus.events(tenant.id, at_least=3))[2]
            assert offer.kind == "list" and offer.sections[0].rows[0].id.startswith("slot:")
            assert await rows.val(tenant.id, "SELECT action FROM scheduler_offers") == "reschedule"

            await runtime.publisher.publish(tap(tenant, p, f"appt:cancel:{appt}", clock))
            cancelled = (await bus.events(tenant.id, at_least=4))[3]
        assert "quedó cancelada" in cancelled.text
        [row] = await rows.fetch(tenant.id, "SELECT status, needs_attention, attention_reason "
                                            "FROM appointments")
        assert (row["status"], row["needs_attention"]) == ("cancelled", True)
        assert row["attention_reason"] == "cancelled by the patient"  # the branch sees it
        assert await rows.val(tenant.id, "SELECT count(*) FROM appointment_claims") == 0

    async def test_without_a_declaration_the_template_goes_without_buttons(
        self, scheduler, make_tenant, rows, bus, clock, deps_for
    ):
        tenant = await make_tenant()
        p = await rows.patient(tenant)
        await rows.appointment(p, at=MONDAY_9, booked_at=MONDAY_9 - timedelta(days=7))
        clock.set(MONDAY_9 - timedelta(hours=23))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            [reminder] = await bus.events(tenant.id, at_least=1)
        assert reminder.template.button_payloads == []

    async def test_messenger_reminders_carry_the_three_quick_replies(
        self, scheduler, make_tenant, rows, bus, clock, deps_for
    ):
        tenant = await make_tenant()
        clock.set(MONDAY_9 - timedelta(hours=23))
        p = await rows.patient(tenant, channel="facebook", last_inbound_at=clock() - timedelta(hours=1))
        appt = await rows.appointment(p, at=MONDAY_9, booked_at=MONDAY_9 - timedelta(days=7))
        async with scheduler() as runtime:
            await run_pass(deps_for(runtime))
            [reminder] = await bus.events(tenant.id, at_least=1)
        assert reminder.kind == "quick_replies"
        assert [(b.id, b.title) for b in reminder.buttons] == [
            (f"appt:confirm:{appt}", "✅ Confirmar"), (f"appt:reschedule:{appt}", "📅 Reprogramar"),
            (f"appt:cancel:{appt}", "❌ Cancelar")]
