"""Every kind of message the platforms send, in the shapes they document, posted signed to the
real ingress, through RabbitMQ to the ai-responder and PostgreSQL, ends stored under the right
tenant and visible through the operator API (reactions, edits and unsends on the message they
name).

Shapes and their sources:
- WhatsApp: pywa's recorded corpus (github.com/david-lev/pywa tests/data/updates/message.json:
  reaction, contacts, order, unsupported, interactive_message_with_err (value-level errors),
  current_location, referral; edited_message.json; deleted_message.json (revoke with
  user_id / BSUID in contacts); system.json (user_changed_number); flow_completion.json) and
  Meta's webhook reference, developers.facebook.com/documentation/business-messaging/whatsapp/
  webhooks/reference/messages/{system,reaction,unsupported}.
- Business-scoped user ids: dualhook.com/docs/contacts-bsuid-webhooks (user_id always present,
  wa_id only when the phone number is available), docs.kapso.ai/docs/whatsapp/
  business-scoped-user-ids.md (match by BSUID first, phone second).
- Messenger / Instagram: developers.facebook.com/docs/messenger-platform/reference/
  webhook-events/ (messages incl. `fallback` attachments, message_edits, message_reactions,
  messaging_referrals, standby) and developers.facebook.com/docs/instagram-platform/webhooks/
  examples (ig_post share, story reply `reply_to.story`, story_mention, is_deleted unsends).
- TikTok: the envelope of services/ingress/tests/payloads/tiktok_*.json (TikTok Business
  Messaging webhooks, `content` a JSON string).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from tistis_ai_responder.main import start as start_responder
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, tenant_tx
from tistis_common.testing.plugin import eventually, inbound_messages, running, temporary_vhost
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import webhooks as wh

NOW = int(time.time())


@pytest.fixture
async def own_vhost(settings):
    async with temporary_vhost(settings.rabbitmq_management_url, settings.rabbitmq_url,
                               "tistis_traffic") as url:
        yield url


def wa(phone_number_id: str, messages: list[dict], *, contacts: list[dict] | None = None,
       errors: list[dict] | None = None) -> dict:
    value: dict = {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "15550783881",
                                "phone_number_id": phone_number_id},
                   "contacts": contacts or [{"profile": {"name": "María"}, "wa_id": "5215511110000"}],
                   "messages": messages}
    if errors:
        value["errors"] = errors
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}


def wa_msg(mid: str, kind: str, content: object, sender: str = "5215511110000", **extra) -> dict:
    return {"from": sender, "id": mid, "timestamp": str(NOW), "type": kind, kind: content, **extra}


def meta(obj: str, account: str, events: list[dict], key: str = "messaging") -> dict:
    return {"object": obj, "entry": [{"id": account, "time": NOW * 1000, key: events}]}


def m_event(account: str, user: str, **fields) -> dict:
    return {"sender": {"id": user}, "recipient": {"id": account}, "timestamp": NOW * 1000, **fields}


def sign(body: bytes, secret: str) -> dict[str, str]:
    return wh.sign_meta(body, secret).headers


async def test_every_kind_is_stored_and_visible_to_staff(settings, own_vhost, make_tenant,
                                                         app_pool):
    tenant = await make_tenant({"ai_context": {"ai_provider": "off"}})
    other = await make_tenant({"ai_context": {"ai_provider": "off"}})
    pn, page, ig = tenant.whatsapp_phone_number_id, tenant.page_id, tenant.instagram_account_id
    secret = settings.meta_app_secret
    user = "24982345670000001"
    deliveries = [
        ("whatsapp", wa(pn, [wa_msg("wamid.t1", "text", {"body": "Hola, ¿precio de limpieza?"})])),
        ("whatsapp", wa(pn, [
            wa_msg("wamid.r1", "reaction", {"message_id": "wamid.t1", "emoji": "\U0001F62E"}),
            wa_msg("wamid.e1", "edit", {"original_message_id": "wamid.t1", "message": {
                "type": "text", "text": {"body": "Hola, ¿precio de limpieza y blanqueamiento?"}}}),
            wa_msg("wamid.c1", "contacts", [{"name": {"formatted_name": "Chandler Bing"},
                                            "phones": [{"phone": "+1 555-555-5555"}]}]),
            wa_msg("wamid.o1", "order", {"catalog_id": "1", "text": "", "product_items": [
                {"product_retailer_id": "LIMPIEZA", "quantity": 1, "item_price": 600,
                 "currency": "MXN"}]}),
            {"from": "5215511110000", "id": "wamid.u1", "timestamp": str(NOW), "type": "unsupported",
             "errors": [{"code": 131051, "title": "Message type unknown",
                         "error_data": {"details": "Message type is currently not supported."}}]},
            wa_msg("wamid.f1", "interactive", {"type": "nfm_reply", "nfm_reply": {
                "response_json": "{\"fecha\": \"2026-12-03\", \"flow_token\": \"t\"}",
                "body": "Sent", "name": "flow"}}),
            wa_msg("wamid.ref1", "text", {"body": "Vi su anuncio"}, referral={
                "source_url": "https://fb.me/ad", "source_id": "ADID", "source_type": "ad",
                "headline": "Blanqueamiento", "ctwa_clid": "CLID"}),
        ])),
        # An `interactive` Meta could not read, with the errors at the value level.
        ("whatsapp", wa(pn, [{"from": "5215511110000", "id": "wamid.i1", "timestamp": str(NOW),
                              "type": "interactive"}],
                        errors=[{"code": 131000, "title": "Something went wrong",
                                 "error_data": {"details": "Unsupported webhook payload"}}])),
        ("whatsapp", wa(pn, [wa_msg("wamid.v1", "revoke", {"original_message_id": "wamid.c1"})])),
        # A username user: only the business-scoped id, then the same patient with the phone.
        ("whatsapp", wa(pn, [{"from_user_id": "MX.1502576394655843", "id": "wamid.b1",
                              "timestamp": str(NOW), "type": "text", "text": {"body": "Hola"}}],
                        contacts=[{"profile": {"name": "Luz"}, "user_id": "MX.1502576394655843"}])),
        ("whatsapp", wa(pn, [wa_msg("wamid.b2", "text", {"body": "Soy Luz"}, sender="5215522220000",
                                    from_user_id="MX.1502576394655843")],
                        contacts=[{"profile": {"name": "Luz"}, "wa_id": "5215522220000",
                                   "user_id": "MX.1502576394655843"}])),
        ("facebook", meta("page", page, [
            m_event(page, user, message={"mid": "m_link", "text": "https://clinica.mx/promo",
                                         "attachments": [{"type": "fallback", "payload": {
                                             "url": "https://clinica.mx/promo"},
                                             "title": "Promo"}]}),
            m_event(page, user, message={"mid": "m_stk", "attachments": [
                {"type": "sticker", "payload": {"url": "https://cdn/s.png",
                                                "sticker_id": 369239263222822}}]}),
            m_event(page, user, message_edit={"mid": "m_link", "text": "Ya no", "num_edit": 1}),
            m_event(page, user, reaction={"mid": "m_stk", "action": "react", "reaction": "love",
                                          "emoji": "\u2764\ufe0f"}),
            m_event(page, user, referral={"ref": "promo-dic", "source": "ADS", "type": "OPEN_THREAD",
                                          "ad_id": "6045246247433"}),
        ])),
        ("facebook", meta("page", page, [m_event(page, user, message={
            "mid": "m_sb", "text": "¿Siguen ahí?"})], key="standby")),
        ("instagram", meta("instagram", ig, [
            m_event(ig, "1254459154600001", message={"mid": "ig_post1", "attachments": [
                {"type": "ig_post", "payload": {"ig_post_media_id": "1790", "title": "Antes y después",
                                                "url": "https://instagram.com/p/x"}}]}),
            m_event(ig, "1254459154600001", message={"mid": "ig_story1", "text": "¡Qué bien!",
                                                     "reply_to": {"story": {"url": "https://cdn/story",
                                                                            "id": "1791"}}}),
            m_event(ig, "1254459154600001", message={"mid": "ig_del", "is_deleted": True}),
        ])),
    ]
    # The dispatcher too: a message with a file reaches the responder once its file was fetched
    # (or failed to be: the message goes on without it).
    async with running(start_ingress, settings.model_copy(update={"rabbitmq_url": own_vhost})) \
            as ingress, running(start_responder, settings.model_copy(update={
                "rabbitmq_url": own_vhost, "ai_debounce_seconds": 0})), \
            running(start_dispatcher, settings.model_copy(update={"rabbitmq_url": own_vhost})):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            for channel, doc in deliveries:
                body = json.dumps(doc).encode()
                answer = await http.post(f"/api/webhook/{channel}", content=body,
                                         headers=sign(body, secret))
                assert answer.status_code == 200, (channel, answer.text)
            # A location at infinity: the coordinates are refused, the message kept.
            raw = json.dumps(wa(pn, [wa_msg("wamid.l1", "location", {"latitude": 0.5,
                                                                     "longitude": 0.5,
                                                                     "name": "Casa"})]))
            body = raw.replace('"latitude": 0.5', '"latitude": 1e999').encode()
            assert (await http.post("/api/webhook/whatsapp", content=body,
                                    headers=sign(body, secret))).status_code == 200

            expected = {"wamid.t1", "wamid.r1", "wamid.e1", "wamid.c1", "wamid.o1", "wamid.u1",
                        "wamid.f1", "wamid.ref1", "wamid.i1", "wamid.v1", "wamid.b1", "wamid.b2",
                        "wamid.l1", "m_link", "m_stk", "m_link#edit1", "m_sb", "ig_post1",
                        "ig_story1", "ig_del#unsend"}

            async def all_stored():
                found = await inbound_messages(app_pool, tenant.id)
                return found if expected <= set(found) and any(
                    k.startswith("reaction:m_stk") for k in found) and any(
                    k.startswith("referral:") for k in found) else None

            stored = await eventually(all_stored, timeout=20)
            assert await inbound_messages(app_pool, other.id) == {}
            kinds = {k: v["kind"] for k, v in stored.items()}
            assert kinds["wamid.r1"] == "reaction" and kinds["wamid.c1"] == "contacts"
            assert kinds["wamid.o1"] == "order" and kinds["wamid.u1"] == "unsupported"
            assert kinds["wamid.f1"] == "flow" and kinds["wamid.i1"] == "unsupported"
            assert kinds["m_link"] == "link" and kinds["m_stk"] == "sticker"
            assert kinds["ig_post1"] == "share" and kinds["wamid.l1"] == "location"
            assert stored["m_link"]["content"] == "Ya no"  # edited, both versions kept
            assert stored["m_link"]["payload"]["versions"] == ["https://clinica.mx/promo"]
            assert stored["wamid.t1"]["payload"]["reaction"] == "\U0001F62E"
            assert stored["wamid.t1"]["content"] == "Hola, ¿precio de limpieza y blanqueamiento?"
            assert "unsent_at" in stored["wamid.c1"]["payload"]
            assert "131051" in stored["wamid.u1"]["payload"]["error"]
            assert stored["wamid.l1"]["payload"]["error"] == "unreadable coordinates"
            assert stored["m_sb"]["payload"]["standby"] is True
            assert stored["ig_story1"]["payload"]["details"]["story_reply"]["id"] == "1791"
            assert "Chandler Bing" in stored["wamid.c1"]["content"]
            # The username user and the phone number are one lead.
            assert stored["wamid.b1"]["conversation_id"] == stored["wamid.b2"]["conversation_id"]
            async with tenant_tx(app_pool, tenant.id) as conn:
                lead = await conn.fetchrow(
                    "SELECT referral, user_aliases FROM leads WHERE platform_user_id = $1",
                    "5215511110000")
            assert lead["referral"]["ctwa_clid"] == "CLID"

            conn = await connect(settings.migration_database_url)
            try:
                async with conn.transaction():
                    _, key = await issue_api_key(conn, tenant.id, "traffic")
            finally:
                await conn.close()
            seen = await http.get(f"/api/v1/conversations/{stored['wamid.t1']['conversation_id']}",
                                  headers={"Authorization": f"Bearer {key}"})
            assert seen.status_code == 200
            shown = {m["platform_message_id"]: m for m in seen.json()["messages"]}
            assert shown["wamid.t1"]["payload"]["reaction"] == "\U0001F62E"
            assert shown["wamid.o1"]["content"].startswith("Order: 1 x LIMPIEZA")


@pytest.mark.parametrize("slug_route", [False, True])
async def test_whatsapp_system_number_change_moves_the_lead(settings, own_vhost, make_tenant,
                                                             app_pool, slug_route):
    tenant = await make_tenant({"ai_context": {"ai_provider": "off"}})
    pn = tenant.whatsapp_phone_number_id
    old, new = f"521{uuid.uuid4().int % 10**10:010d}", f"521{uuid.uuid4().int % 10**10:010d}"
    path = f"/api/webhook/whatsapp/{tenant.slug}" if slug_route else "/api/webhook/whatsapp"
    async with running(start_ingress, settings.model_copy(update={"rabbitmq_url": own_vhost})) \
            as ingress, running(start_responder, settings.model_copy(update={
                "rabbitmq_url": own_vhost, "ai_debounce_seconds": 0})):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            for doc in (wa(pn, [wa_msg("wamid.n1", "text", {"body": "Hola"}, sender=old)]),
                        wa(pn, [wa_msg("wamid.n2", "system", {
                            "body": f"User changed from {old} to {new}", "wa_id": new,
                            "type": "user_changed_number"}, sender=old)])):
                body = json.dumps(doc).encode()
                assert (await http.post(path, content=body,
                                        headers=sign(body, settings.meta_app_secret))
                        ).status_code == 200

            async def moved():
                async with tenant_tx(app_pool, tenant.id) as conn:
                    return await conn.fetchval(
                        "SELECT user_aliases FROM leads WHERE platform_user_id = $1", new)

            assert await eventually(moved, timeout=20) == [old]
