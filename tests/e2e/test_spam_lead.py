"""A spam lead, end to end: the AI responder's rules fallback sees a link, the scorer flags the
lead, and the AI responder does not answer that lead again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.broker import Publisher, connect
from tistis_common.db import tenant_tx
from tistis_common.events import Channel, InboundMessage, OutboundMessage, parse_event, routing_pattern
from tistis_common.testing.plugin import eventually, running
from tistis_common.topology import declare_topology
from tistis_scorer.main import start as start_scorer

ALWAYS_OPEN = {"timezone": "America/Mexico_City",
               **{d: [["00:00", "23:59"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


def patient_says(tenant, text: str) -> InboundMessage:
    platform_id = f"wamid.{uuid.uuid4().hex}"
    return InboundMessage(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"whatsapp:{platform_id}"), tenant_id=tenant.id,
        channel=Channel.WHATSAPP, platform_account_id=tenant.whatsapp_phone_number_id,
        platform_user_id="5215512340000", platform_message_id=platform_id,
        sent_at=datetime.now(UTC), text=text, display_name="Spammer", phone="+5215512340000",
    )


@pytest.fixture
async def replies(settings):
    """Publishes like ingress and collects what is sent to patients."""
    connection = await connect(settings.rabbitmq_url)
    channel = await connection.channel()
    exchange = await declare_topology(channel, settings.retry_delays)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=routing_pattern(OutboundMessage))
    publisher = await Publisher.open(connection)
    seen: list[OutboundMessage] = []

    async def collect(message):
        async with message.process():
            seen.append(parse_event(message.body))

    await queue.consume(collect)
    yield publisher, seen
    await connection.close()


class TestSpamLead:
    async def test_a_lead_flagged_as_spam_by_the_rules_gets_no_more_replies(
        self, settings, app_pool, make_tenant, replies
    ):
        publisher, seen = replies
        tenant = await make_tenant({"ai_context": {"business_hours": ALWAYS_OPEN}})
        async with (
            # no key: the FAQ fallback answers and the rules detector finds the signals
            running(start_ai_responder, settings, anthropic_api_key=None, ai_debounce_seconds=0.2),
            running(start_scorer, settings),
        ):
            # a FAQ question with a link: answered from the FAQ, and the rules say spam
            await publisher.publish(patient_says(tenant, "¿Cuál es su horario? http://promo.example.xyz"))

            async def flagged():
                async with tenant_tx(app_pool, tenant.id) as conn:
                    return await conn.fetchval("SELECT spam FROM leads")

            await eventually(flagged)

            async def answered():
                return [o for o in seen if o.tenant_id == tenant.id]

            first_replies = len(await eventually(answered))
            # the same FAQ question again, from the flagged lead: stored, not answered
            later = patient_says(tenant, "¿Cuál es su horario?")
            await publisher.publish(later)

            async def stored():
                async with tenant_tx(app_pool, tenant.id) as conn:
                    return await conn.fetchval(
                        "SELECT 1 FROM messages WHERE platform_message_id = $1",
                        later.platform_message_id,
                    )

            await eventually(stored)
            await asyncio.sleep(1.0)  # a reply (debounced 0.2 s) would be out by now
            assert len(await answered()) == first_replies
