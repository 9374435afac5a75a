"""While the model thinks, the patient sees their message read and a reply being typed:
ai-responder (slow fake Claude) -> ReplyStarted -> dispatcher -> the sandbox's fake platforms,
which record the calls in the platforms' own format:
- WhatsApp Cloud API `{"messaging_product": "whatsapp", "status": "read", "message_id": ...,
  "typing_indicator": {"type": "text"}}`, answered `{"success": true}`
  (https://developers.facebook.com/documentation/business-messaging/whatsapp/typing-indicators/);
- Messenger `{"recipient": {"id": PSID}, "sender_action": "mark_seen" | "typing_on"}`
  (https://developers.facebook.com/docs/messenger-platform/send-messages/sender-actions).
Best-effort: a refused indicator changes nothing else."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.broker import Publisher, connect
from tistis_common.events import Channel, InboundMessage
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_sandbox import AsyncSandboxClient, running_sandbox

ALWAYS_OPEN = {"ai_context": {"business_hours": {"timezone": "UTC", **{
    d: [["00:00", "23:59"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}}}


def inbound(tenant, channel: Channel, account: str, user: str, platform_id: str) -> InboundMessage:
    return InboundMessage(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}:{platform_id}"), tenant_id=tenant.id,
        channel=channel, platform_account_id=account, platform_user_id=user,
        platform_message_id=platform_id, sent_at=datetime.now(UTC), text="Hola",
    )


async def test_read_and_typing_reach_the_fakes_and_their_failure_changes_nothing(
    settings, make_tenant
):
    tenant = await make_tenant(ALWAYS_OPEN)
    wa = inbound(tenant, Channel.WHATSAPP, tenant.whatsapp_phone_number_id, "5215544000001",
                 f"wamid.{uuid.uuid4().hex}")
    fb = inbound(tenant, Channel.FACEBOOK, tenant.page_id, "7700000000000001",
                 f"m_{uuid.uuid4().hex}")
    with running_sandbox() as sandbox_url:
        async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
            s = s.model_copy(update={
                "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
                "anthropic_base_url": sandbox_url, "anthropic_api_key": "sk-ant-sandbox",
                "ai_debounce_seconds": 0.1, "ai_typing_after_seconds": 0.1,
            })
            await sandbox.fault("anthropic", "slow", delay=0.8)
            # WhatsApp refuses the read/typing call: the reply still goes out, once.
            await sandbox.script("whatsapp", {"status": 500, "error_code": 1})
            async with running(start_ai_responder, s), running(start_dispatcher, s):
                connection = await connect(s.rabbitmq_url)
                publisher = await Publisher.open(connection)
                await publisher.publish_all([wa, fb])
                await connection.close()

                async def replies():
                    found = [r for r in await sandbox.requests()
                             if r["kind"] == "message" and r["target"] != "anthropic"
                             and r["status"] == 200]
                    return len(found) >= 2

                await eventually(replies, timeout=15)
                await asyncio.sleep(0.5)  # a second reply, if any, would have arrived
                whatsapp = await sandbox.requests("whatsapp")
                graph = await sandbox.requests("graph")
    assert [(r["kind"], r["status"]) for r in whatsapp] == [("typing", 500), ("message", 200)]
    assert whatsapp[0]["json"] == {"messaging_product": "whatsapp", "status": "read",
                                   "message_id": wa.platform_message_id,
                                   "typing_indicator": {"type": "text"}}
    assert whatsapp[1]["recipient"] == "5215544000001"
    assert [(r["kind"], r["status"]) for r in graph] == [
        ("mark_seen", 200), ("typing_on", 200), ("message", 200)]
    assert graph[0]["json"] == {"recipient": {"id": "7700000000000001"},
                                "sender_action": "mark_seen"}
    # The stored token is sealed (tistis_common.secrets): the indicators carry it opened, the
    # same token the send carries.
    assert whatsapp[0]["token"] == whatsapp[1]["token"] is not None
    assert graph[0]["token"] == graph[1]["token"] == graph[2]["token"] is not None
    assert REGISTRY.get_sample_value(
        "tistis_typing_total", {"channel": "whatsapp", "outcome": "failed"}) >= 1
    assert REGISTRY.get_sample_value(
        "tistis_typing_total", {"channel": "facebook", "outcome": "sent"}) >= 1
