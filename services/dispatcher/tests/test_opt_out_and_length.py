"""Opt-out (STOP / BAJA, WhatsApp 131050) stops follow-ups and marketing, not replies; a text
too long even for several messages is refused with a clear status, never cut."""

from __future__ import annotations

import asyncio

import pytest


class TestOptOut:
    @pytest.mark.parametrize("word", ["STOP", "baja", " Baja. "])
    async def test_a_stop_word_stops_followups(self, clinic, sandbox, make_tenant, word):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await clinic.inbound(conv, word)
        event = clinic.outbound(conv, purpose="followup", sender_type="system")
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "skipped")
        assert row["error_title"] == "opted_out"
        assert (await clinic.lead_row(conv))["opted_out_at"] is not None
        assert await sandbox.requests("whatsapp", conv.recipient) == []

    async def test_replies_still_go_to_an_opted_out_patient(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await clinic.inbound(conv, "BAJA")
        marketing = clinic.outbound(conv, purpose="marketing", sender_type="system")
        await clinic.publish(marketing)
        await clinic.until_status(conv, marketing.message_id, "skipped")
        reply = clinic.outbound(conv, purpose="reply", text="Entendido, no te enviaremos promociones.")
        await clinic.publish(reply)
        await clinic.until_status(conv, reply.message_id, "sent")

    async def test_alta_after_baja_lets_follow_ups_go_again(self, clinic, sandbox, make_tenant):
        """The latest word decides (the AI responder cleared opted_out_at on ALTA)."""
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await clinic.inbound(conv, "BAJA")
        await asyncio.sleep(0.01)
        await clinic.inbound(conv, "Alta")
        event = clinic.outbound(conv, purpose="followup", sender_type="system")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")

    async def test_a_sentence_with_the_word_is_not_an_opt_out(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await clinic.inbound(conv, "¿Cuándo baja el precio de la limpieza?")
        event = clinic.outbound(conv, purpose="followup", sender_type="system")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")

    async def test_an_opted_out_lead_gets_no_marketing_on_other_channels(self, clinic, sandbox,
                                                                          make_tenant):
        conv = await clinic.conversation(await make_tenant(), "facebook")
        await clinic.inbound(conv, "stop")
        event = clinic.outbound(conv, purpose="marketing", sender_type="system")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "skipped")


class TestTooLong:
    async def test_a_text_needing_too_many_parts_is_refused_not_cut(self, clinic, sandbox,
                                                                    make_tenant, dispatcher):
        conv = await clinic.conversation(await make_tenant(), "facebook")
        max_parts = dispatcher.settings.dispatcher_max_parts
        event = clinic.outbound(conv, text="Una frase. " * (2000 * max_parts // 11 + 50))
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_title"].startswith("too_long")
        assert await sandbox.requests("graph", conv.recipient) == []

    async def test_buttons_with_a_body_over_1024_are_refused(self, clinic, sandbox, make_tenant):
        from tistis_common.events import Button

        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, kind="buttons", text="x" * 1025,
                                buttons=[Button(id="a", title="A")])
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_title"].startswith("too_long")

    async def test_a_button_title_over_20_is_refused(self, clinic, sandbox, make_tenant):
        from tistis_common.events import Button

        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, kind="buttons", text="¿Sí?",
                                buttons=[Button(id="a", title="Un título demasiado largo")])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "failed")
        await asyncio.sleep(0.1)
        assert await sandbox.requests("whatsapp", conv.recipient) == []


class TestUnsupportedKinds:
    async def test_a_whatsapp_template_on_messenger_is_refused_clearly(self, clinic, sandbox,
                                                                        make_tenant):
        from tistis_common.events import TemplateRef

        conv = await clinic.conversation(await make_tenant(), "facebook")
        event = clinic.outbound(conv, kind="template", text=None,
                                template=TemplateRef(name="seguimiento", body_params=["Ana"]))
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_title"].startswith("unsupported")

    async def test_media_on_tiktok_is_refused_clearly(self, clinic, sandbox, make_tenant):
        from tistis_common.events import MediaRef

        conv = await clinic.conversation(await make_tenant(), "tiktok")
        event = clinic.outbound(conv, kind="media", text=None, media_type="image",
                                media=MediaRef(url="https://example.com/a.jpg"))
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_title"].startswith("unsupported")
        assert await sandbox.requests("tiktok") == []
