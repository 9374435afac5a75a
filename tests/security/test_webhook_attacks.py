"""Attacks on the webhook door: forged and replayed signatures, another tenant's slug and account
ids, injection in paths, headers and fields, oversized and deeply nested bodies. None may get
through (a 2xx for a forgery, a stored row, a 5xx or a crash)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.db import connect, scope, tenant_tx
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import webhooks as wh

INJECTIONS = [
    "'; DROP TABLE messages; --",
    "\" OR 1=1 --",
    "1' UNION SELECT access_token FROM channel_connections --",
    "$(reboot)",
    "../../etc/passwd",
    "%00",
    "{{7*7}}",
    "<script>alert(1)</script>",
]


@pytest.fixture
async def door(settings):
    async with running(start_ingress, settings) as ingress, running(start_ai_responder, settings):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}", timeout=10) as http:
            yield http


def payloads(tenant, text: str = "Hola") -> dict[str, dict]:
    return {
        "whatsapp": wh.whatsapp_payload([wh.wa_text("5215500000001", text)],
                                        phone_number_id=tenant.whatsapp_phone_number_id),
        "facebook": wh.messenger_payload(text, sender_id=wh.psid(), page_id=tenant.page_id),
        "instagram": wh.instagram_payload(text, sender_id=wh.psid(), ig_id=tenant.instagram_account_id),
        "tiktok": wh.tiktok_payload(text, user_id="tt-user-1", business_id=tenant.tiktok_business_id),
    }


def sign(channel: str, payload: dict | bytes, secret: str, t: int | None = None) -> wh.SignedWebhook:
    if channel == "tiktok":
        return wh.sign_tiktok(payload, secret, timestamp=t)
    return wh.sign_meta(payload, secret)


def secret_of(settings, channel: str) -> str:
    return settings.tiktok_client_secret if channel == "tiktok" else settings.meta_app_secret


async def stored(pool, tenant_id) -> int:
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetchval("SELECT count(*) FROM messages")


def refused(answer: httpx.Response) -> bool:
    return 400 <= answer.status_code < 500


class TestForgery:
    async def test_forged_missing_and_replayed_signatures_get_nothing_through(
        self, door, settings, app_pool, make_tenant, attack
    ):
        tenant = await make_tenant()
        for channel, payload in payloads(tenant).items():
            body = (wh.meta_bytes(payload) if channel != "tiktok"
                    else json.dumps(payload, separators=(",", ":")).encode())
            forged = [
                sign(channel, payload, "guessed-secret"),
                wh.SignedWebhook(body, {"Content-Type": "application/json"}),
            ]
            if channel == "tiktok":
                stale = int(time.time()) - settings.tiktok_signature_tolerance_seconds - 60
                forged.append(sign(channel, payload, secret_of(settings, channel), t=stale))
                future = int(time.time()) + settings.tiktok_signature_tolerance_seconds + 60
                forged.append(sign(channel, payload, secret_of(settings, channel), t=future))
            else:
                good = sign(channel, payload, secret_of(settings, channel))
                tampered = good.body.replace(b"Hola", b"Hol4")
                forged.append(wh.SignedWebhook(tampered, good.headers))
                forged.append(wh.SignedWebhook(body, {**good.headers,
                                                      "X-Hub-Signature-256": "sha1=" + "0" * 40}))
            for body, headers in forged:
                answer = await door.post(f"/api/webhook/{channel}/{tenant.slug}", content=body,
                                         headers=headers)
                attack(f"forged signature ({channel})", not refused(answer))
                assert answer.status_code == 401, (channel, answer.status_code, answer.text)
        await asyncio.sleep(0.5)
        assert await stored(app_pool, tenant.id) == 0


class TestCrossTenant:
    @pytest.mark.parametrize("route", ["app", "slug"])
    async def test_no_signature_reaches_beyond_the_connections_it_may_address(
        self, door, settings, app_pool, make_tenant, attack, route
    ):
        victim, attacker = await make_tenant(), await make_tenant()
        conn = await connect(settings.migration_database_url)
        try:  # the attacker's clinic brings its own app, so it holds a secret of its own
            async with conn.transaction():
                await scope(conn, attacker.id)
                await conn.execute("UPDATE channel_connections SET app_secret = 'attacker-own'")
        finally:
            await conn.close()
        for channel, payload in payloads(victim).items():
            path = (f"/api/webhook/{channel}/{attacker.slug}" if route == "slug"
                    else f"/api/webhook/{channel}")
            # The attacker signs, with its own app's secret, a delivery naming the victim's
            # accounts; on the slug route, to the attacker's own URL.
            body, headers = sign(channel, payload, "attacker-own")
            answer = await door.post(path, content=body, headers=headers)
            attack(f"own secret for another clinic's account ({channel}, {route} URL)",
                   not refused(answer))
            assert answer.status_code in (401, 403), (channel, answer.status_code)
        await asyncio.sleep(0.5)
        assert await stored(app_pool, victim.id) == 0
        assert await stored(app_pool, attacker.id) == 0

    async def test_the_victims_delivery_posted_to_another_slug_stays_the_victims(
        self, door, settings, app_pool, make_tenant, attack
    ):
        victim, attacker = await make_tenant(), await make_tenant()
        for channel, payload in payloads(victim).items():
            # Validly signed with the shared app secret (only the platform holds it): the
            # victim's message, whatever URL it came to; never the attacker's.
            body, headers = sign(channel, payload, secret_of(settings, channel))
            answer = await door.post(f"/api/webhook/{channel}/{attacker.slug}", content=body,
                                     headers=headers)
            assert answer.status_code == 200, (channel, answer.status_code)
        await asyncio.sleep(1.0)
        attack("another clinic's delivery stored under the URL's tenant",
               await stored(app_pool, attacker.id) != 0)
        assert await stored(app_pool, attacker.id) == 0


class TestInjection:
    async def test_injection_in_paths_is_a_clean_4xx(self, door, settings, attack):
        for text in INJECTIONS:
            for path in (f"/api/webhook/whatsapp/{text}", f"/api/webhook/{text}/esva-dental",
                         f"/api/webhook/whatsapp/x?hub.mode={text}&hub.verify_token={text}"):
                body, headers = wh.sign_meta({"object": "whatsapp_business_account", "entry": []},
                                             settings.meta_app_secret)
                for answer in (await door.post(path, content=body, headers=headers),
                               await door.get(path)):
                    attack("injection in path", not refused(answer))
                    assert refused(answer), (path, answer.status_code)

    async def test_injection_in_headers_is_a_clean_4xx(self, door, make_tenant, attack):
        tenant = await make_tenant()
        for text in INJECTIONS:
            for name in ("X-Hub-Signature-256", "Content-Type", "Tiktok-Signature", "X-Forwarded-For"):
                for channel in ("whatsapp", "tiktok"):
                    answer = await door.post(f"/api/webhook/{channel}/{tenant.slug}", content=b"{}",
                                             headers={name: text})
                    attack("injection in headers", not refused(answer))
                    assert refused(answer), (name, text, answer.status_code)

    async def test_injection_in_signed_fields_is_stored_as_plain_text(
        self, door, settings, app_pool, make_tenant, attack
    ):
        tenant = await make_tenant()
        for text in INJECTIONS:
            payload = wh.whatsapp_payload([wh.wa_text("5215500000002", text)], name=text,
                                          phone_number_id=tenant.whatsapp_phone_number_id)
            body, headers = wh.sign_meta(payload, settings.meta_app_secret)
            answer = await door.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                     headers=headers)
            assert answer.status_code == 200
        for _ in range(100):
            async with tenant_tx(app_pool, tenant.id) as conn:
                contents = {r["content"] for r in await conn.fetch(
                    "SELECT content FROM messages WHERE direction = 'inbound'")}
            if len(contents) == len(INJECTIONS):
                break
            await asyncio.sleep(0.1)
        for text in INJECTIONS:
            attack("injection in signed fields", text not in contents)
        assert contents == set(INJECTIONS)  # stored verbatim, nothing executed, tables intact


class TestHostileBodies:
    async def test_oversized_and_deeply_nested_bodies_are_refused(
        self, door, settings, make_tenant, attack
    ):
        tenant = await make_tenant()
        huge = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'
        deep = b'{"object":"whatsapp_business_account","entry":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        # Signed, so the platform's: every broken item is kept for an engineer, as one dead
        # letter for the whole delivery, and the answer is 200 (a 4xx would lose them).
        wide = json.dumps({"object": "whatsapp_business_account",
                           "entry": [{"changes": [{"value": {}}]}] * 5000}).encode()
        for name, body, expected in (("oversized", huge, {413}), ("deeply nested", deep, {400}),
                                     ("5,000 broken items", wide, {200})):
            body, headers = wh.sign_meta(body, settings.meta_app_secret)
            answer = await door.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body,
                                     headers=headers)
            attack(f"hostile body: {name}", answer.status_code not in expected)
            assert answer.status_code in expected, (name, answer.status_code)
        assert (await door.get("/healthz")).status_code == 200
