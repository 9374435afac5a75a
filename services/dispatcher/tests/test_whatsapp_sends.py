"""WhatsApp: each message kind reaches the fake Cloud API in the body Meta validates, and the
stored message records the platform id."""

from __future__ import annotations

from datetime import timedelta

from tistis_common.events import Button, ListRow, ListSection, MediaRef, TemplateRef
from tistis_dispatcher import whatsapp


async def sent_bodies(sandbox, recipient: str, count: int = 1) -> list[dict]:
    found = await sandbox.wait_for("whatsapp", recipient=recipient, count=count)
    assert len(found) == count, found
    return [r["json"] for r in found]


class TestWhatsAppKinds:
    async def test_text_is_sent_and_stored_with_the_wamid(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, text="Hola, ¿en qué te ayudo?")
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["type"] == "text" and body["text"]["body"] == "Hola, ¿en qué te ayudo?"
        assert body["messaging_product"] == "whatsapp" and body["to"] == conv.recipient
        assert row["platform_message_id"].startswith("wamid.")
        [request] = await sandbox.requests("whatsapp", conv.recipient)
        assert request["path"].endswith(f"/{conv.tenant.whatsapp_phone_number_id}/messages")

    async def test_reply_buttons(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, kind="buttons", text="¿Confirmas tu cita?", buttons=[
            Button(id="confirm", title="✅ Confirmar"), Button(id="reschedule", title="📅 Cambiar")])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["interactive"]["type"] == "button"
        assert [b["reply"]["id"] for b in body["interactive"]["action"]["buttons"]] == [
            "confirm", "reschedule"]

    async def test_list_menu(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, kind="list", text="Elige un servicio",
                                list_button="Ver servicios", sections=[ListSection(
                                    title="Dental", rows=[ListRow(id="cleaning", title="Limpieza",
                                                                  description="45 min")])])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["interactive"]["action"]["sections"][0]["rows"][0]["id"] == "cleaning"

    async def test_template_with_language_and_body_parameters(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        ref = whatsapp.template_appointment_confirmation("María", "Lunes 15 de Enero", "10:00 AM",
                                                         "ESVA Nogales")
        event = clinic.outbound(conv, kind="template", text=None, template=ref,
                                purpose="confirmation", sender_type="system")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["template"]["name"] == "cita_confirmada"
        assert body["template"]["language"] == {"code": "es_MX"}
        assert [p["text"] for p in body["template"]["components"][0]["parameters"]] == [
            "María", "Lunes 15 de Enero", "10:00 AM", "ESVA Nogales"]

    async def test_template_quick_reply_buttons_carry_their_payloads(
        self, clinic, sandbox, make_tenant
    ):
        """Cloud API template components: a `button` component per quick reply, `sub_type`
        quick_reply, `index` a string, a `payload` parameter (github api-evangelist/whatsapp
        json-schema/whatsapp-cloud-api-template-component-schema.json)."""
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        ref = TemplateRef(name="recordatorio_cita", body_params=["María", "lunes", "09:00", "Centro"],
                          button_payloads=["appt:confirm:1", "appt:cancel:1"])
        event = clinic.outbound(conv, kind="template", text=None, template=ref,
                                purpose="reminder", sender_type="system")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["template"]["components"][1:] == [
            {"type": "button", "sub_type": "quick_reply", "index": "0",
             "parameters": [{"type": "payload", "payload": "appt:confirm:1"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "1",
             "parameters": [{"type": "payload", "payload": "appt:cancel:1"}]}]

    async def test_media_by_link(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, kind="media", text=None, media_type="image",
                                media=MediaRef(url="https://example.com/promo.jpg",
                                               caption="Nuestra clínica"))
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["image"] == {"link": "https://example.com/promo.jpg",
                                 "caption": "Nuestra clínica"}

    async def test_long_text_is_split_on_sentences_without_losing_a_word(
        self, clinic, sandbox, make_tenant
    ):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        sentences = [f"Esta es la oración número {i} de la explicación." for i in range(150)]
        text = " ".join(sentences)
        assert len(text) > whatsapp.TEXT_MAX
        event = clinic.outbound(conv, text=text)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        bodies = await sent_bodies(sandbox, conv.recipient, count=2)
        parts = [b["text"]["body"] for b in bodies]
        assert all(len(p) <= whatsapp.TEXT_MAX and p.endswith(".") for p in parts)
        assert " ".join(parts) == text
        assert row["platform_message_id"] == (await sandbox.requests(
            "whatsapp", conv.recipient))[-1]["answered_id"]

    async def test_services_menu_helper_sends_the_clinic_list(self, dispatcher, sandbox,
                                                              make_tenant):
        from tistis_dispatcher.platform import Account

        tenant = await make_tenant()
        account = Account(None, "whatsapp", tenant.whatsapp_phone_number_id, "token-x")
        wamid = await whatsapp.send_services_menu(
            dispatcher.platform, account, "5215500000001",
            [("cleaning", "Limpieza dental", "45 min"), ("whitening", "Blanqueamiento", None)])
        assert wamid.startswith("wamid.")
        [body] = await sent_bodies(sandbox, "5215500000001")
        assert [r["title"] for r in body["interactive"]["action"]["sections"][0]["rows"]] == [
            "Limpieza dental", "Blanqueamiento"]


    async def test_the_guides_template_helpers_pass_the_platform_checks(self, dispatcher,
                                                                        sandbox, make_tenant):
        from tistis_dispatcher.platform import Account

        tenant = await make_tenant()
        account = Account(None, "whatsapp", tenant.whatsapp_phone_number_id, "token-x")
        client, to = dispatcher.platform, "5215500000002"
        await whatsapp.send_appointment_confirmation(client, account, to, "María", "Lunes 15",
                                                     "10:00 AM", "ESVA Nogales", "Av. Principal 123")
        await whatsapp.send_appointment_reminder(client, account, to, "María", "Lunes 15",
                                                 "10:00 AM", "ESVA Nogales")
        await whatsapp.send_welcome(client, account, to, "María")
        await whatsapp.send_quote_sent(client, account, to, "María", "Limpieza, Blanqueamiento")
        await whatsapp.send_follow_up(client, account, to, "María")
        await whatsapp.send_text(client, account, to, "Hola")
        await whatsapp.send_buttons(client, account, to, "¿Confirmas?",
                                    [Button(id="y", title="Sí")])
        bodies = await sent_bodies(sandbox, to, count=7)
        assert [b.get("template", {}).get("name") for b in bodies] == [
            "cita_confirmada", "recordatorio_cita", "bienvenida_esva", "cotizacion_enviada",
            "seguimiento", None, None]


class TestWhatsAppWindow:
    async def test_outside_24h_the_fallback_template_goes_instead(self, clinic, sandbox,
                                                                   make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp",
                                         last_inbound=timedelta(hours=30))
        event = clinic.outbound(conv, purpose="followup", sender_type="system",
                                fallback_template=TemplateRef(name="seguimiento",
                                                              body_params=["María"]))
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [body] = await sent_bodies(sandbox, conv.recipient)
        assert body["type"] == "template" and body["template"]["name"] == "seguimiento"

    async def test_outside_24h_without_a_template_is_blocked_and_flagged(self, clinic, sandbox,
                                                                          make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp",
                                         last_inbound=timedelta(hours=25))
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "blocked_window")
        assert (await clinic.conversation_row(conv))["needs_attention"] is True
        assert await sandbox.requests("whatsapp", conv.recipient) == []
