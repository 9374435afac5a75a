"""Deliveries as the platforms make them: one app's callback URL receives entries of many
clinics in one POST, and each entry goes to the tenant that owns its account id.

Sources: Meta sends every Page / Instagram account subscribed to an app to the app's one
callback URL, batching entries ("entry" is an array; "Webhooks are batched", Meta Webhooks
getting started, developers.facebook.com/docs/graph-api/webhooks/getting-started); WhatsApp
may override the callback per WABA / phone number, but only for some fields
(developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/override).
"""

from __future__ import annotations

import json

import aio_pika
import pytest
from tistis_cli import deadletters as dl
from tistis_common.db import connect, scope
from tistis_common.events import HeldItem, WebhookItemsHeld, dump_event
from tistis_common.testing.plugin import peek_queue
from tistis_common.topology import INGRESS_ITEMS

from .conftest import account_of, meta_headers, payload, tiktok_headers

SAMPLES = [("whatsapp", "whatsapp_text"), ("facebook", "facebook_text"),
           ("instagram", "instagram_text"), ("tiktok", "tiktok_text")]
ROUTES = ["app", "slug"]


async def own_secret(settings, tenant, channel: str, secret: str) -> None:
    """The clinic brings its own app: its connection holds that app's secret."""
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await scope(conn, tenant.id)
            await conn.execute("UPDATE channel_connections SET app_secret = $1 WHERE channel = $2",
                               secret, channel)
    finally:
        await conn.close()


def signed(channel: str, body: bytes, secret: str) -> dict[str, str]:
    return tiktok_headers(body, secret) if channel == "tiktok" else meta_headers(body, secret)


async def post(poster, channel: str, body: bytes, headers: dict[str, str], route: str,
               slug: str):
    path = f"/api/webhook/{channel}" if route == "app" else f"/api/webhook/{channel}/{slug}"
    return await poster.http.post(path, content=body, headers=headers)


def merged(channel: str, bodies: list[bytes]) -> bytes:
    """One delivery holding the entries of several deliveries (Meta batches entries)."""
    docs = [json.loads(b) for b in bodies]
    return json.dumps({"object": docs[0]["object"],
                       "entry": [e for d in docs for e in d["entry"]]}).encode()


async def held_items(settings) -> list[dict]:
    """What is in ingress.webhook-items.dlq, left there."""
    return [{**json.loads(body), "error": str(headers.get("x-error"))}
            for body, headers in await peek_queue(settings.rabbitmq_url, INGRESS_ITEMS.dlq)]


class TestOneAppForEveryClinic:
    @pytest.mark.parametrize("channel", ["whatsapp", "facebook", "instagram"])
    async def test_entries_of_three_tenants_in_one_delivery_are_stored_each_under_its_own(
        self, poster, tap, make_tenant, channel
    ):
        tenants = [await make_tenant() for _ in range(3)]
        name = f"{channel}_text"
        body = merged(channel, [payload(name, account_of(t, channel)) for t in tenants])
        answer = await post(poster, channel, body, signed(channel, body, poster.meta_secret),
                            "app", "")
        assert (answer.status_code, answer.json()["events"]) == (200, 3), answer.text
        for t in tenants:
            [event] = await tap.wait_for(t.id, 1)
            assert event.platform_account_id == account_of(t, channel)

    async def test_tiktok_on_the_app_url_goes_to_the_business_accounts_tenant(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        body = payload("tiktok_text", tenant.tiktok_business_id)
        answer = await post(poster, "tiktok", body, signed("tiktok", body, poster.tiktok_secret),
                            "app", "")
        assert answer.status_code == 200, answer.text
        assert len(await tap.wait_for(tenant.id, 1)) == 1

    async def test_app_level_handshake_checks_the_app_verify_token(self, poster, ingress):
        token = ingress.settings.webhook_verify_token
        ok = await poster.http.get("/api/webhook/instagram", params={
            "hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"})
        assert (ok.status_code, ok.text) == (200, "1158201444")
        wrong = await poster.http.get("/api/webhook/instagram", params={
            "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
        assert wrong.status_code == 403


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("channel", "name"), SAMPLES)
class TestWhatTheSignatureMayAddress:
    async def test_unknown_account_is_acknowledged_counted_and_never_stored(
        self, poster, tap, make_tenant, channel, name, route
    ):
        tenant = await make_tenant()
        body = payload(name, "9900000000001" if channel != "tiktok" else "tt-nobody")
        secret = poster.tiktok_secret if channel == "tiktok" else poster.meta_secret
        answer = await post(poster, channel, body, signed(channel, body, secret), route,
                            tenant.slug)
        assert (answer.status_code, answer.json()["status"]) == (200, "unknown_account")
        assert await tap.settled(tenant.id) == []
        metrics = (await poster.http.get("/metrics")).text
        assert f'tistis_webhook_events_total{{channel="{channel}",kind="unknown_account"}}' in metrics

    async def test_a_connections_own_secret_for_another_connections_account_is_403(
        self, poster, tap, make_tenant, settings, channel, name, route
    ):
        tenant, other = await make_tenant(), await make_tenant()
        await own_secret(settings, tenant, channel, "clinic-own-app-secret")
        body = payload(name, account_of(other, channel))
        answer = await post(poster, channel, body, signed(channel, body, "clinic-own-app-secret"),
                            route, tenant.slug)
        # On the slug's URL the secret is found and reaches too far (403); on the app's URL
        # nothing the body names holds that secret, so it signs nothing we know (401).
        expected = (403, "cross_tenant") if route == "slug" else (401, "bad_signature")
        assert (answer.status_code, answer.json()["status"]) == expected
        assert await tap.settled(other.id) == []
        assert await tap.settled(tenant.id) == []

    async def test_a_connections_own_secret_for_its_own_account_is_stored(
        self, poster, tap, make_tenant, settings, channel, name, route
    ):
        tenant = await make_tenant()
        await own_secret(settings, tenant, channel, "clinic-own-app-secret")
        body = payload(name, account_of(tenant, channel))
        answer = await post(poster, channel, body, signed(channel, body, "clinic-own-app-secret"),
                            route, tenant.slug)
        assert answer.status_code == 200, answer.text
        assert len(await tap.wait_for(tenant.id, 1)) == 1

    async def test_the_shared_secret_for_a_connection_with_its_own_is_403(
        self, poster, tap, make_tenant, settings, channel, name, route
    ):
        tenant = await make_tenant()
        await own_secret(settings, tenant, channel, "clinic-own-app-secret")
        body = payload(name, account_of(tenant, channel))
        secret = poster.tiktok_secret if channel == "tiktok" else poster.meta_secret
        answer = await post(poster, channel, body, signed(channel, body, secret), route,
                            tenant.slug)
        assert (answer.status_code, answer.json()["status"]) == (403, "cross_tenant")

    async def test_forged_signature_is_401(self, poster, tap, make_tenant, channel, name, route):
        tenant = await make_tenant()
        body = payload(name, account_of(tenant, channel))
        answer = await post(poster, channel, body, signed(channel, body, "forged"), route,
                            tenant.slug)
        assert (answer.status_code, answer.json()["status"]) == (401, "bad_signature")
        assert await tap.settled(tenant.id) == []


class TestOneBrokenItem:
    async def test_a_broken_message_among_good_ones_is_kept_and_the_others_are_stored(
        self, poster, tap, make_tenant, settings
    ):
        tenant = await make_tenant()
        doc = json.loads(payload("whatsapp_batch", tenant.whatsapp_phone_number_id))
        messages = doc["entry"][0]["changes"][0]["value"]["messages"]
        good = len(messages)
        messages.insert(1, {"from": "5215512345678", "id": "wamid.broken", "type": "text",
                            "timestamp": "not-a-time", "text": {"body": "lost?"}})
        body = json.dumps(doc).encode()
        answer = await post(poster, "whatsapp", body, meta_headers(body, poster.meta_secret),
                            "app", "")
        assert answer.status_code == 200, answer.text
        assert "Error" not in answer.text and "timestamp" not in answer.text
        assert answer.json()["events"] >= good
        events = await tap.wait_for(tenant.id, good)
        assert "wamid.broken" not in {getattr(e, "platform_message_id", None) for e in events}
        [letter] = [h for h in await held_items(settings) if h["tenant_id"] == str(tenant.id)]
        [kept] = letter["items"]
        assert kept["raw"]["id"] == "wamid.broken" and "timestamp" in kept["error"]
        metrics = (await poster.http.get("/metrics")).text
        assert 'tistis_webhook_events_total{channel="whatsapp",kind="held"}' in metrics

    async def test_an_event_for_another_page_inside_an_entry_is_kept_not_stored(
        self, poster, tap, make_tenant, settings
    ):
        tenant, other = await make_tenant(), await make_tenant()
        body = payload("facebook_text", tenant.page_id).replace(
            b'"recipient": {\n            "id": "' + tenant.page_id.encode(),
            b'"recipient": {\n            "id": "' + other.page_id.encode())
        assert other.page_id.encode() in body
        answer = await post(poster, "facebook", body, meta_headers(body, poster.meta_secret),
                            "slug", tenant.slug)
        assert answer.status_code == 200
        assert await tap.settled(tenant.id) == [] and await tap.settled(other.id) == []
        assert [h for h in await held_items(settings) if h["tenant_id"] == str(tenant.id)]

    async def test_a_replayed_item_is_read_again_and_published(
        self, poster, tap, make_tenant, settings
    ):
        """What `tistis dlq replay --queue ingress.webhook-items` does, once the reason an item
        was held is fixed: here a readable item, as an older version might have held it."""
        tenant = await make_tenant()
        doc = json.loads(payload("whatsapp_text", tenant.whatsapp_phone_number_id))
        value = doc["entry"][0]["changes"][0]["value"]
        held = WebhookItemsHeld(tenant_id=tenant.id, channel="whatsapp", items=[HeldItem(
            account=tenant.whatsapp_phone_number_id, kind="message", raw=value["messages"][0],
            scope={"contacts": value["contacts"]}, error="KeyError: 'x'")])
        connection = await aio_pika.connect(settings.rabbitmq_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.default_exchange.publish(aio_pika.Message(
                dump_event(held), message_id=str(held.event_id), headers={
                    "x-original-queue": INGRESS_ITEMS.name, "tenant_id": str(tenant.id)}),
                routing_key=INGRESS_ITEMS.dlq)
            outcome = await dl.replay(connection, INGRESS_ITEMS.dlq,
                                      lambda letter: letter.message_id == str(held.event_id))
        finally:
            await connection.close()
        assert len(outcome.replayed) == 1
        [event] = await tap.wait_for(tenant.id, 1, timeout=10)
        assert event.platform_message_id == value["messages"][0]["id"]
