"""The assistant's tools end to end: signed webhooks as the platforms send them -> ingress ->
ai-responder (the sandbox's fake Anthropic: its demo brain, or a scripted tool call) -> scheduler
and scorer -> dispatcher -> the platform fakes, over the real broker and database.

Wire formats checked here, and their sources:
- Claude tool use: the answer's `tool_use` blocks (id, name, input), stop_reason "tool_use",
  several blocks in one turn; https://docs.anthropic.com/claude/docs/legacy-tool-use and
  https://platform.claude.com/docs/en/agents-and-tools/tool-use/parallel-tool-use
- WhatsApp interactive list (`type: interactive`, `interactive.type: list`, `action.button`,
  `action.sections[].rows[]` with id/title/description, at most 10 rows):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-list-messages
- Messenger / Instagram quick replies (`message.quick_replies[]` of content_type "text", title,
  payload; the tap comes back as `message.quick_reply.payload`):
  https://developers.facebook.com/docs/messenger-platform/send-messages/quick-replies/
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.broker import Publisher, connect
from tistis_common.db import connect as db_connect
from tistis_common.db import tenant_tx
from tistis_common.events import Event, ReplyRequested
from tistis_common.settings import Settings
from tistis_common.testing.plugin import TestTenant as Tenant
from tistis_common.testing.plugin import eventually, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import webhooks as wh
from tistis_scheduler.main import start as start_scheduler
from tistis_scorer.main import start as start_scorer

ALWAYS = {"timezone": "UTC", **{d: [["00:00", "23:59"]] for d in
                                ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
CLINIC = {
    "ai_context": {"business_hours": ALWAYS},
    "services": [
        {"name": "Limpieza dental", "price_min": 600, "price_max": 900, "duration_minutes": 45,
         "keywords": ["limpieza", "cleaning"]},
        {"name": "Implantes dentales", "price_min": 15000, "price_max": 25000,
         "duration_minutes": 90, "high_value": True, "keywords": ["implante", "implantes"]},
    ],
}


@dataclass
class Pipeline:
    http: httpx.AsyncClient
    settings: Settings


@pytest.fixture(scope="module")
async def pipeline(settings, sandbox_url) -> AsyncIterator[Pipeline]:
    s = settings.model_copy(update={
        "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
        "anthropic_base_url": sandbox_url, "anthropic_api_key": "sk-ant-sandbox",
        "ai_debounce_seconds": 0.1, "scheduler_tick_seconds": 0,
    })
    async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
            running(start_scheduler, s), running(start_dispatcher, s), running(start_scorer, s):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            yield Pipeline(http, s)


async def post(p: Pipeline, tenant: Tenant, channel: str, user: str, text: str | None,
               choice: tuple[str, str] | None = None) -> None:
    """One patient message (or a tap on `choice` = (id, title)) as the platform delivers it."""
    if channel == "whatsapp":
        message = (wh.wa_list_reply(user, choice[0], choice[1]) if choice
                   else wh.wa_text(user, text or ""))
        payload = wh.whatsapp_payload([message], phone_number_id=tenant.whatsapp_phone_number_id)
    elif channel == "facebook":
        payload = wh.messenger_payload(choice[1] if choice else text, sender_id=user,
                                       page_id=tenant.page_id,
                                       quick_reply_payload=choice[0] if choice else None)
    elif channel == "instagram":
        payload = wh.instagram_payload(choice[1] if choice else text, sender_id=user,
                                       ig_id=tenant.instagram_account_id,
                                       quick_reply_payload=choice[0] if choice else None)
    else:
        payload = wh.tiktok_payload(text or "", user_id=user, business_id=tenant.tiktok_business_id)
    signed = (wh.sign_tiktok(payload, p.settings.tiktok_client_secret) if channel == "tiktok"
              else wh.sign_meta(payload, p.settings.meta_app_secret))
    answer = await p.http.post(f"/api/webhook/{channel}/{tenant.slug}", content=signed.body,
                               headers=signed.headers)
    assert answer.status_code == 200, answer.text


async def publish(settings: Settings, event: Event) -> None:
    """As another service (here: staff through the operator API) publishes it."""
    connection = await connect(settings.rabbitmq_url)
    try:
        await (await Publisher.open(connection)).publish(event)
    finally:
        await connection.close()


def recipient(channel: str, user: str) -> str:
    return wh.tiktok_conversation_id(user) if channel == "tiktok" else user


async def sends(sandbox, channel: str, user: str, count: int, timeout: float = 15) -> list[dict]:
    """The platform calls made to this patient, oldest first, once there are `count`."""
    async def enough():
        found = [r for r in await sandbox.requests(recipient=recipient(channel, user))
                 if r["target"] != "anthropic" and r["status"] == 200]
        return found if len(found) >= count else None
    return await eventually(enough, timeout=timeout)  # type: ignore[return-value]


async def one(pool, tenant_id, sql: str, *args):
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetchrow(sql, *args)


def message_of(request: dict) -> dict:
    """The Messenger / Instagram `message`, or the WhatsApp body, or TikTok's text."""
    body = request["json"]
    return body.get("message") or body


class TestServicesMenu:
    @pytest.mark.parametrize("channel", ["whatsapp", "facebook", "instagram", "tiktok"])
    async def test_the_menu_arrives_in_the_channel_format_and_the_choice_is_understood(
        self, channel, pipeline, sandbox, make_tenant, app_pool
    ):
        tenant = await make_tenant(CLINIC)
        user = {"whatsapp": "5215500001111", "tiktok": "tt-user-menu"}.get(channel) or wh.psid()
        await post(pipeline, tenant, channel, user, "Hola, ¿qué servicios tienen?")
        [menu] = await sends(sandbox, channel, user, 1)
        body = menu["json"]
        if channel == "whatsapp":
            assert body["type"] == "interactive" and body["interactive"]["type"] == "list"
            rows = body["interactive"]["action"]["sections"][0]["rows"]
            assert [r["title"] for r in rows] == ["Implantes dentales", "Limpieza dental"]
            assert rows[1]["description"] == "$600 a $900 MXN"
            assert body["interactive"]["action"]["button"] == "Ver servicios"
            choice = (rows[1]["id"], rows[1]["title"])
        elif channel in ("facebook", "instagram"):
            replies = body["message"]["quick_replies"]
            assert [(q["content_type"], q["title"]) for q in replies] == [
                ("text", "Implantes dentales"), ("text", "Limpieza dental")]
            choice = (replies[1]["payload"], replies[1]["title"])
        else:
            text = body["text"]["body"]
            assert "1. Implantes dentales" in text and "2. Limpieza dental" in text
            choice = None
        assert (choice is None) or choice[0].startswith("service:")

        if choice is None:
            await post(pipeline, tenant, channel, user, "2")  # TikTok: the number of the line
        else:
            await post(pipeline, tenant, channel, user, None, choice=choice)
        _, quote = await sends(sandbox, channel, user, 2)
        text = json.dumps(quote["json"], ensure_ascii=False)
        assert "Limpieza dental: $600 a $900 MXN" in text  # the price from the catalog
        lead = await one(app_pool, tenant.id, "SELECT interested_services FROM leads")
        assert lead["interested_services"] == ["Limpieza dental"]


class TestQuote:
    async def test_a_quote_is_stored_and_goes_as_text_inside_the_window(
        self, pipeline, sandbox, make_tenant, app_pool
    ):
        tenant = await make_tenant(CLINIC)
        user = "5215500002222"
        await post(pipeline, tenant, "whatsapp", user, "¿Cuánto cuestan los implantes?")
        [sent] = await sends(sandbox, "whatsapp", user, 1)
        assert sent["json"]["type"] == "text"
        assert "Implantes dentales: $15,000 a $25,000 MXN" in sent["json"]["text"]["body"]
        quote = await one(app_pool, tenant.id, "SELECT * FROM quotes")
        assert [i["name"] for i in quote["items"]] == ["Implantes dentales"]
        assert (quote["items"][0]["price_min"], quote["currency"]) == ("15000.00", "MXN")
        assert quote["quoted_at"] > datetime.now(UTC) - timedelta(minutes=1)

    async def test_outside_the_window_the_quote_goes_as_the_cotizacion_enviada_template(
        self, pipeline, sandbox, make_tenant, app_pool
    ):
        tenant = await make_tenant(CLINIC)
        user = "5215500003333"
        await post(pipeline, tenant, "whatsapp", user, "Hola")
        await sends(sandbox, "whatsapp", user, 1)
        async with tenant_tx(app_pool, tenant.id) as conn:  # two days of silence since
            await conn.execute("UPDATE leads SET last_inbound_at = now() - interval '2 days'")
            await conn.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days'")
            conversation_id = await conn.fetchval("SELECT id FROM conversations")
        await sandbox.script("anthropic", {"tool_calls": [{"name": "send_quote", "input": {
            "services": ["Limpieza dental", "Implantes dentales"]}}]})
        await publish(pipeline.settings, ReplyRequested(tenant_id=tenant.id,
                                                        conversation_id=conversation_id))
        _, sent = await sends(sandbox, "whatsapp", user, 2)
        template = sent["json"]["template"]
        assert template["name"] == "cotizacion_enviada"
        params = [p["text"] for p in template["components"][0]["parameters"]]
        assert params == ["María García", "Limpieza dental ($600 a $900 MXN), "
                                          "Implantes dentales ($15,000 a $25,000 MXN)"]
        quote = await one(app_pool, tenant.id, "SELECT total_min, total_max FROM quotes")
        assert (quote["total_min"], quote["total_max"]) == (15600, 25900)


class TestInterestAndScore:
    async def test_interest_in_a_high_value_service_raises_the_legacy_score(
        self, pipeline, sandbox, make_tenant, app_pool
    ):
        tenant = await make_tenant(CLINIC)
        owner = await db_connect(pipeline.settings.migration_database_url)
        try:  # the guide's n8n scorer: +15 for a high-value service
            await owner.execute("""UPDATE tenants SET settings = '{"scoring": {"rule_set": "legacy"}}'
                                   WHERE id = $1""", tenant.id)
        finally:
            await owner.close()
        await post(pipeline, tenant, "whatsapp", "5215500005555", "Me interesan los implantes")
        await sends(sandbox, "whatsapp", "5215500005555", 1)

        async def credited():
            row = await one(app_pool, tenant.id, """
                SELECT count(*) FILTER (WHERE signal = 'engagement.high_value_service'
                                          AND rule_points > 0) AS high_value
                FROM lead_score_events e JOIN leads l ON l.id = e.lead_id
                WHERE l.platform_user_id = '5215500005555'""")
            return row["high_value"] > 0
        await eventually(credited, timeout=15)
        lead = await one(app_pool, tenant.id, """SELECT interested_services FROM leads
                                                 WHERE platform_user_id = '5215500005555'""")
        assert lead["interested_services"] == ["Implantes dentales"]


class TestInvalidToolCall:
    async def test_a_tool_call_that_does_not_validate_is_answered_from_the_catalog(
        self, pipeline, sandbox, make_tenant, app_pool
    ):
        tenant = await make_tenant(CLINIC)
        user = "5215500006666"
        await sandbox.script("anthropic", {"tool_calls": [
            {"name": "send_quote", "input": {"services": ["Trasplante capilar"]}},
            {"name": "book_appointment", "input": {"preferred_dates": ["el jueves"]}},
        ]})
        await post(pipeline, tenant, "whatsapp", user, "¿Cuánto cuesta la limpieza?")
        [sent] = await sends(sandbox, "whatsapp", user, 1)
        assert sent["json"]["type"] == "text"
        assert "Trasplante" not in sent["json"]["text"]["body"]
        reply = await one(app_pool, tenant.id,
                          "SELECT fallback FROM messages WHERE direction = 'outbound'")
        assert reply["fallback"] is True
        assert await one(app_pool, tenant.id, "SELECT 1 FROM quotes") is None
        assert await one(app_pool, tenant.id, "SELECT 1 FROM appointments") is None


class TestReminderButtonTap:
    async def test_a_tap_on_the_reminder_template_confirms_the_appointment(
        self, pipeline, sandbox, make_tenant, app_pool
    ):
        """The template's quick-reply tap arrives as a `button` message with our payload; the
        scheduler answers it, the assistant stays quiet."""
        tenant = await make_tenant(CLINIC)
        user = "5215500007777"
        await post(pipeline, tenant, "whatsapp", user, "Hola")
        await sends(sandbox, "whatsapp", user, 1)
        async with tenant_tx(app_pool, tenant.id) as conn:
            lead_id, conversation_id = await conn.fetchrow("SELECT lead_id, id FROM conversations")
            branch_id = await conn.fetchval("SELECT id FROM branches")
            start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
            appointment_id = await conn.fetchval(
                """INSERT INTO appointments (tenant_id, lead_id, branch_id, conversation_id,
                                             scheduled_at, ends_at, status)
                   VALUES ($1, $2, $3, $4, $5, $6, 'booked') RETURNING id""",
                tenant.id, lead_id, branch_id, conversation_id, start, start + timedelta(minutes=45))
        tap = wh.wa_template_button(user, f"appt:confirm:{appointment_id}", "✅ Confirmar")
        signed = wh.sign_meta(wh.whatsapp_payload([tap], phone_number_id=tenant.whatsapp_phone_number_id),
                              pipeline.settings.meta_app_secret)
        answer = await pipeline.http.post(f"/api/webhook/whatsapp/{tenant.slug}",
                                          content=signed.body, headers=signed.headers)
        assert answer.status_code == 200
        _, thanks = await sends(sandbox, "whatsapp", user, 2)
        assert "quedó confirmada" in thanks["json"]["text"]["body"]
        confirmed = await one(app_pool, tenant.id, "SELECT confirmed_at FROM appointments")
        assert confirmed["confirmed_at"] is not None
        ai = await one(app_pool, tenant.id, """SELECT count(*) AS n FROM messages
                                               WHERE direction = 'outbound' AND sender_type = 'ai'""")
        assert ai["n"] == 1  # only the answer to "Hola"
