"""Messenger and Instagram: text, quick replies, buttons and media through the Send API;
RESPONSE inside 24 h, HUMAN_AGENT only for a human within 7 days, never for the AI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tistis_common.events import Button, ListRow, ListSection, MediaRef

CHANNELS = ["facebook", "instagram"]


async def one_body(sandbox, recipient: str) -> dict:
    [found] = await sandbox.wait_for("graph", recipient=recipient)
    return found["json"]


@pytest.mark.parametrize("channel", CHANNELS)
class TestMetaKinds:
    async def test_text_goes_as_a_response(self, clinic, sandbox, make_tenant, channel):
        tenant = await make_tenant()
        conv = await clinic.conversation(tenant, channel)
        event = clinic.outbound(conv, text="Hola 👋")
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        body = await one_body(sandbox, conv.recipient)
        assert body == {"recipient": {"id": conv.recipient}, "messaging_type": "RESPONSE",
                        "message": {"text": "Hola 👋"}}
        assert row["platform_message_id"].startswith("m_")
        [request] = await sandbox.requests("graph", conv.recipient)
        account = tenant.page_id if channel == "facebook" else tenant.instagram_account_id
        assert request["path"].endswith(f"/{account}/messages")

    async def test_quick_replies(self, clinic, sandbox, make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel)
        event = clinic.outbound(conv, kind="quick_replies", text="¿Qué día prefieres?",
                                buttons=[Button(id="mon", title="Lunes"),
                                         Button(id="tue", title="Martes")])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        body = await one_body(sandbox, conv.recipient)
        assert [q["payload"] for q in body["message"]["quick_replies"]] == ["mon", "tue"]

    async def test_buttons_as_the_button_template(self, clinic, sandbox, make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel)
        event = clinic.outbound(conv, kind="buttons", text="¿Confirmas?",
                                buttons=[Button(id="yes", title="Sí"), Button(id="no", title="No")])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        payload = (await one_body(sandbox, conv.recipient))["message"]["attachment"]["payload"]
        assert payload["template_type"] == "button"
        assert [b["payload"] for b in payload["buttons"]] == ["yes", "no"]

    async def test_a_list_becomes_quick_replies(self, clinic, sandbox, make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel)
        event = clinic.outbound(conv, kind="list", text="Servicios", sections=[ListSection(
            title="Dental", rows=[ListRow(id="a", title="Limpieza"), ListRow(id="b", title="Ortodoncia")])])
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        body = await one_body(sandbox, conv.recipient)
        assert [q["title"] for q in body["message"]["quick_replies"]] == ["Limpieza", "Ortodoncia"]

    async def test_media_by_url(self, clinic, sandbox, make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel)
        event = clinic.outbound(conv, kind="media", text=None, media_type="image",
                                media=MediaRef(url="https://example.com/a.jpg"))
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        attachment = (await one_body(sandbox, conv.recipient))["message"]["attachment"]
        assert attachment == {"type": "image", "payload": {"url": "https://example.com/a.jpg",
                                                           "is_reusable": True}}

    async def test_text_over_2000_is_split(self, clinic, sandbox, make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel)
        text = " ".join(f"Frase número {i}." for i in range(200))
        event = clinic.outbound(conv, text=text)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        found = await sandbox.wait_for("graph", recipient=conv.recipient, count=2)
        assert " ".join(r["json"]["message"]["text"] for r in found) == text


@pytest.mark.parametrize("channel", CHANNELS)
class TestMetaWindow:
    async def test_an_ai_reply_after_24h_is_blocked(self, clinic, sandbox, make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel,
                                         last_inbound=timedelta(hours=26))
        event = clinic.outbound(conv, sender_type="ai")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "blocked_window")
        assert await sandbox.requests("graph", conv.recipient) == []
        assert (await clinic.conversation_row(conv))["needs_attention"] is True

    async def test_an_agent_reply_within_7_days_is_tagged_human_agent(self, clinic, sandbox,
                                                                       make_tenant, channel):
        conv = await clinic.conversation(await make_tenant(), channel,
                                         last_inbound=timedelta(days=3))
        event = clinic.outbound(conv, sender_type="agent", purpose="agent",
                                text="Hola, soy Ana de recepción.")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        body = await one_body(sandbox, conv.recipient)
        assert body["messaging_type"] == "MESSAGE_TAG" and body["tag"] == "HUMAN_AGENT"

    async def test_an_agent_reply_after_7_days_is_blocked(self, clinic, sandbox, make_tenant,
                                                          channel):
        conv = await clinic.conversation(await make_tenant(), channel,
                                         last_inbound=timedelta(days=8))
        event = clinic.outbound(conv, sender_type="agent", purpose="agent")
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "blocked_window")
        assert row["error_title"] == "meta_7d_human_agent_window"

    async def test_a_reminder_outside_the_window_does_not_go(self, clinic, sandbox, make_tenant,
                                                             channel):
        conv = await clinic.conversation(await make_tenant(), channel,
                                         last_inbound=timedelta(days=2))
        event = clinic.outbound(conv, sender_type="system", purpose="reminder")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "blocked_window")
