"""End to end with the AI responder storing what the ingress published: a message posted many
times is stored once on every channel, and a broker outage answers 503 and loses nothing.
The dispatcher runs too: patient files go through its media consumer first (the fixtures' media
ids are unknown to the sandbox, so each is forwarded without its file, never lost)."""

from __future__ import annotations

import httpx
import pytest
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import eventually, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress

from .conftest import Poster, ScratchVhost, account_of, payload


async def stored(pool, tenant_id) -> list[tuple[str, str, str]]:
    async with tenant_tx(pool, tenant_id) as conn:
        # Patient (and staff) messages only: the responder's replies may be stored meanwhile
        # (files come through the media consumer, so they arrive after the texts).
        rows = await conn.fetch("SELECT channel, platform_message_id, sender_type FROM messages "
                                "WHERE direction = 'inbound' ORDER BY platform_message_id")
    return [tuple(r) for r in rows]


async def count_at_least(pool, tenant_id, n):
    rows = await stored(pool, tenant_id)
    return rows if len(rows) >= n else None


def with_media(settings, sandbox_url, media_dir):
    return settings.model_copy(update={
        "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
        "media_dir": str(media_dir), "media_fetch_backoff_seconds": 0.05})


@pytest.fixture(scope="module")
async def ai_responder(settings, ingress, sandbox_url, tmp_path_factory):
    s = with_media(settings, sandbox_url, tmp_path_factory.mktemp("media"))
    async with running(start_ai_responder, s) as runtime, running(start_dispatcher, s):
        yield runtime


@pytest.mark.parametrize(("channel", "name", "count"), [
    ("whatsapp", "whatsapp_batch", 4), ("facebook", "facebook_batch", 3),
    ("instagram", "instagram_batch", 3), ("tiktok", "tiktok_text", 1),
])
async def test_same_message_ids_posted_three_times_are_stored_once(
    poster, ai_responder, app_pool, make_tenant, channel, name, count
):
    tenant = await make_tenant()
    for _ in range(3):
        answer = await poster.post(channel, tenant, name)
        assert answer.status_code == 200
    # A later, different message proves the copies were consumed, not just pending.
    await poster.post(channel, tenant, f"{channel}_text" if channel != "tiktok" else "tiktok_image")
    rows = await eventually(lambda: count_at_least(app_pool, tenant.id, count + 1))
    assert len(rows) == count + 1
    assert len({r[1] for r in rows}) == count + 1


async def test_agent_message_is_stored_as_agent(poster, ai_responder, app_pool, make_tenant):
    tenant = await make_tenant()
    assert (await poster.post("tiktok", tenant, "tiktok_send_msg")).status_code == 200
    rows = await eventually(lambda: count_at_least(app_pool, tenant.id, 1))
    assert rows == [("tiktok", "u5Buqc6lAghuOelnHUZV88DK2F==", "agent")]


async def test_broker_outage_answers_503_and_the_retried_post_is_stored_once(
    settings, app_pool, make_tenant, sandbox_url, tmp_path
):
    vhost = ScratchVhost(settings)
    await vhost.create(settings.retry_delays)
    try:
        tenant = await make_tenant()
        async with running(start_ingress, settings, rabbitmq_url=vhost.url) as ingress, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            poster = Poster(http, settings.meta_app_secret, settings.tiktok_client_secret)
            body = payload("whatsapp_batch", account_of(tenant, "whatsapp"))

            await vhost.delete()  # the broker is gone for this ingress
            for _ in range(2):
                answer = await poster.post("whatsapp", tenant, "", body=body)
                assert (answer.status_code, answer.json()["status"]) == (503, "unavailable")

            await vhost.create(settings.retry_delays)  # back, empty: nothing was half-published

            async def accepted():
                answer = await poster.post("whatsapp", tenant, "", body=body)
                return answer if answer.status_code == 200 else None

            await eventually(accepted, timeout=20, interval=0.5)  # the platform's retries
            s = with_media(settings, sandbox_url, tmp_path)
            async with running(start_ai_responder, s, rabbitmq_url=vhost.url), \
                    running(start_dispatcher, s, rabbitmq_url=vhost.url):
                rows = await eventually(lambda: count_at_least(app_pool, tenant.id, 4))
                assert len(rows) == len({r[1] for r in rows}) == 4
    finally:
        await vhost.delete()
