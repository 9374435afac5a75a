"""Every refusal answers its code, is counted by outcome, and publishes nothing."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import meta_headers, payload, tiktok_headers


async def refused(poster, tap, tenant, answer: httpx.Response, status: int, outcome: str,
                  channel: str) -> None:
    assert (answer.status_code, answer.json()["status"]) == (status, outcome), answer.text
    assert await tap.settled(tenant.id) == []
    metrics = (await poster.http.get("/metrics")).text
    assert f'tistis_webhooks_total{{channel="{channel}",outcome="{outcome}"}}' in metrics


SAMPLES = [("whatsapp", "whatsapp_text"), ("facebook", "facebook_text"),
           ("instagram", "instagram_text"), ("tiktok", "tiktok_text")]


@pytest.mark.parametrize(("channel", "name"), SAMPLES)
class TestSignatures:
    async def test_forged_signature_is_401(self, poster, tap, make_tenant, channel, name):
        tenant = await make_tenant()
        body = payload(name, {"whatsapp": tenant.whatsapp_phone_number_id, "facebook": tenant.page_id,
                              "instagram": tenant.instagram_account_id,
                              "tiktok": tenant.tiktok_business_id}[channel])
        headers = (tiktok_headers(body, "not-the-secret") if channel == "tiktok"
                   else meta_headers(body, "not-the-secret"))
        answer = await poster.post(channel, tenant, name, body=body, headers=headers)
        await refused(poster, tap, tenant, answer, 401, "bad_signature", channel)

    async def test_missing_signature_is_401(self, poster, tap, make_tenant, channel, name):
        tenant = await make_tenant()
        answer = await poster.post(channel, tenant, name, headers={"Content-Type": "application/json"})
        await refused(poster, tap, tenant, answer, 401, "bad_signature", channel)

    async def test_signature_over_a_reserialized_body_is_401(
        self, poster, tap, make_tenant, channel, name
    ):
        tenant = await make_tenant()
        original = payload(name, "1")
        body = original.replace(b"\n", b"").replace(b"  ", b"")  # same JSON, other bytes
        headers = (tiktok_headers(original, poster.tiktok_secret) if channel == "tiktok"
                   else meta_headers(original, poster.meta_secret))
        answer = await poster.post(channel, tenant, name, body=body, headers=headers)
        await refused(poster, tap, tenant, answer, 401, "bad_signature", channel)

    async def test_another_tenants_account_signed_with_the_shared_secret_is_that_tenants(
        self, poster, tap, make_tenant, channel, name
    ):
        tenant, other = await make_tenant(), await make_tenant()
        # The other clinic's payload posted to this slug: only the platform holds the shared
        # app secret, so it is the other clinic's message, wherever it was posted.
        answer = await poster.post(channel, other, name, slug=tenant.slug)
        assert answer.status_code == 200, answer.text
        assert len(await tap.wait_for(other.id, 1)) == 1
        assert await tap.settled(tenant.id) == []

    async def test_broken_json_is_400(self, poster, tap, make_tenant, channel, name):
        tenant = await make_tenant()
        body = b'{"object": "page", "entry": [' if channel != "tiktok" else b'{"event": "im_'
        headers = (tiktok_headers(body, poster.tiktok_secret) if channel == "tiktok"
                   else meta_headers(body, poster.meta_secret))
        answer = await poster.post(channel, tenant, name, body=body, headers=headers)
        await refused(poster, tap, tenant, answer, 400, "malformed", channel)

    async def test_json_that_is_not_the_platforms_shape_is_400(
        self, poster, tap, make_tenant, channel, name
    ):
        tenant = await make_tenant()
        for body in (b'[1, 2]', b'{"object": "something_else", "entry": []}',
                     b'{"object": "instagram", "entry": "no"}', b'{"event": 7}'):
            headers = (tiktok_headers(body, poster.tiktok_secret) if channel == "tiktok"
                       else meta_headers(body, poster.meta_secret))
            answer = await poster.post(channel, tenant, name, body=body, headers=headers)
            await refused(poster, tap, tenant, answer, 400, "malformed", channel)

    async def test_body_over_one_mebibyte_is_413(self, poster, tap, make_tenant, channel, name):
        tenant = await make_tenant()
        body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
        answer = await poster.post(channel, tenant, name, body=body)
        await refused(poster, tap, tenant, answer, 413, "too_large", channel)

    async def test_unknown_tenant_is_404(self, poster, tap, make_tenant, channel, name):
        tenant = await make_tenant()
        answer = await poster.post(channel, tenant, name, slug="no-such-clinic")
        assert (answer.status_code, answer.json()["status"]) == (404, "unknown_tenant")


class TestTikTokReplayWindow:
    async def test_stale_timestamp_is_401_even_with_a_correct_signature(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()
        answer = await poster.post("tiktok", tenant, "tiktok_text", tiktok_t=int(time.time()) - 301)
        await refused(poster, tap, tenant, answer, 401, "bad_signature", "tiktok")
        assert "stale" in answer.json()["detail"]

    async def test_timestamp_from_the_future_beyond_tolerance_is_401(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        # Well beyond: a loaded machine may take seconds to check it (t + 301 then passes).
        answer = await poster.post("tiktok", tenant, "tiktok_text", tiktok_t=int(time.time()) + 360)
        await refused(poster, tap, tenant, answer, 401, "bad_signature", "tiktok")

    async def test_timestamp_inside_tolerance_is_accepted(self, poster, tap, make_tenant):
        tenant = await make_tenant()
        answer = await poster.post("tiktok", tenant, "tiktok_text", tiktok_t=int(time.time()) - 200)
        assert answer.status_code == 200
        assert len(await tap.wait_for(tenant.id, 1)) == 1


class TestOtherRefusals:
    async def test_chunked_body_over_the_limit_is_413_without_reading_it_all(
        self, poster, tap, make_tenant
    ):
        tenant = await make_tenant()

        async def chunks():
            for _ in range(40):  # 2.5 MiB, no Content-Length
                yield b"x" * 65536

        answer = await poster.http.post(f"/api/webhook/whatsapp/{tenant.slug}", content=chunks(),
                                        headers={"Content-Type": "application/json"})
        await refused(poster, tap, tenant, answer, 413, "too_large", "whatsapp")

    async def test_unknown_channel_is_refused(self, poster, make_tenant):
        tenant = await make_tenant()
        answer = await poster.http.post(f"/api/webhook/telegram/{tenant.slug}", content=b"{}")
        assert answer.status_code == 422
