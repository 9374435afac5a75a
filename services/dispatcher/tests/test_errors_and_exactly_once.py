"""Exactly once and the platform's errors: rate limits retried, a redelivery sends nothing,
permanent errors not retried, an expired token parks the message until it is replayed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aio_pika
from prometheus_client import REGISTRY
from tistis_common.broker import H_ORIGINAL_KEY
from tistis_common.events import MessageStatus
from tistis_common.testing.plugin import eventually
from tistis_common.topology import DISPATCHER_OUTBOUND, EXCHANGE


async def ok_requests(sandbox, target: str, recipient: str) -> list[dict]:
    return [r for r in await sandbox.requests(target, recipient) if r["status"] == 200]


class TestExactlyOnce:
    async def test_a_redelivered_event_does_not_send_twice(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        await clinic.publish(event, event)
        await clinic.publish(event.model_copy(update={"event_id": event.event_id}))
        await asyncio.sleep(0.5)
        assert len(await ok_requests(sandbox, "whatsapp", conv.recipient)) == 1
        labels = {"tenant": conv.tenant.slug, "channel": "whatsapp"}  # the slug, not the UUID
        assert REGISTRY.get_sample_value("tistis_sends_total", {**labels, "outcome": "sent"}) == 1
        assert REGISTRY.get_sample_value("tistis_connection_healthy", labels) == 1

    async def test_concurrent_duplicates_send_once(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.publish(*[event] * 5)
        await clinic.until_status(conv, event.message_id, "sent")
        await asyncio.sleep(1.0)  # the losers retry after the runner's delays, then see 'sent'
        assert len(await ok_requests(sandbox, "whatsapp", conv.recipient)) == 1

    async def test_a_message_stored_as_pending_by_the_responder_is_sent_from_its_row(
        self, clinic, sandbox, make_tenant
    ):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, text="Respuesta de la IA")
        from tistis_common.db import tenant_tx
        async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
            await conn.execute(
                """INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel,
                                         direction, sender_type, content, status, model)
                   VALUES ($1, $2, $3, $4, 'whatsapp', 'outbound', 'ai', $5, 'pending', 'claude')""",
                event.message_id, conv.tenant.id, conv.conversation_id, conv.lead_id, event.text)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        assert row["model"] == "claude"  # the responder's row, not a new one


class TestRateLimits:
    async def test_429_then_success_sends_once(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"status": 429, "headers": {"Retry-After": "0"}})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        requests = await sandbox.requests("whatsapp", conv.recipient)
        assert [r["status"] for r in requests] == [429, 200]

    async def test_pair_rate_limit_backs_off_for_that_recipient(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"error_code": 131056})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        requests = await sandbox.requests("whatsapp", conv.recipient)
        assert [r["error_code"] for r in requests] == [131056, None]

    async def test_a_long_retry_after_goes_back_to_the_queue(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "facebook")
        await sandbox.script("graph", {"status": 429, "headers": {"Retry-After": "30"}})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        assert [r["status"] for r in await sandbox.requests("graph", conv.recipient)] == [429, 200]

    async def test_5xx_is_retried_by_the_queue_and_sent_once(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"status": 500}, {"status": 503})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        requests = await sandbox.requests("whatsapp", conv.recipient)
        assert [r["status"] for r in requests] == [500, 503, 200]

    async def test_a_timeout_is_retried_by_the_queue(self, clinic, sandbox, make_tenant,
                                                     dispatcher):
        # The platform may have taken the first request (it answered too late): the risk of a
        # timeout retry, documented in docs/reliability.md.
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        timeout = dispatcher.settings.dispatcher_http_timeout_seconds
        await sandbox.script("tiktok", {"delay": timeout + 0.5})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent", timeout=15)
        requests = await sandbox.requests("tiktok")  # the late one is recorded without recipient
        assert len(requests) == 2
        assert row["platform_message_id"] == requests[-1]["answered_id"]


class TestPermanentErrors:
    async def test_undeliverable_fails_once_and_flags_the_conversation(self, clinic, sandbox,
                                                                        make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"error_code": 131026})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_code"] == 131026
        assert (await clinic.conversation_row(conv))["needs_attention"] is True
        await asyncio.sleep(0.7)  # past the runner's retry delays: nothing more was tried
        assert len(await sandbox.requests("whatsapp", conv.recipient)) == 1

    async def test_template_errors_are_not_retried(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"error_code": 132001})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_code"] == 132001

    async def test_window_error_from_the_platform_blocks_and_flags(self, clinic, sandbox,
                                                                    make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"error_code": 131047})
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "blocked_window")
        assert (await clinic.conversation_row(conv))["needs_attention"] is True

    async def test_131050_opts_the_lead_out(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await sandbox.script("whatsapp", {"error_code": 131050})
        event = clinic.outbound(conv, purpose="marketing", sender_type="system")
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "failed")
        assert (await clinic.lead_row(conv))["opted_out_at"] is not None


async def take_from_dlq(channel, queue: str, message_id: str,
                        timeout: float = 10) -> aio_pika.abc.AbstractIncomingMessage:
    """Our message out of the dead-letter queue; the others go back."""

    async def check():
        q = await channel.get_queue(queue)
        found, others = None, []
        while (msg := await q.get(fail=False)) is not None:
            if json.loads(msg.body)["message_id"] == message_id:
                found = msg
            else:
                others.append(msg)
        for msg in others:
            await msg.nack(requeue=True)
        if found is not None:
            await found.ack()
        return found

    return await eventually(check, timeout)  # type: ignore[return-value]


class TestExpiredToken:
    async def test_expired_token_parks_the_message_and_replay_after_the_fix_sends_it(
        self, clinic, sandbox, make_tenant, amqp, capfd
    ):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        await clinic.set_token(conv, "expired-token")
        assert (await clinic.connection_row(conv))["access_token"].startswith("fernet:")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        channel = await amqp.channel()
        parked = await take_from_dlq(channel, DISPATCHER_OUTBOUND["whatsapp"].dlq,
                                     str(event.message_id))
        connection = await clinic.connection_row(conv)
        assert connection["healthy"] is False and "190" in connection["last_error"]
        row = await clinic.message(conv, event.message_id)
        assert row["status"] == "pending" and row["error_code"] == 190
        assert await ok_requests(sandbox, "whatsapp", conv.recipient) == []
        # The token the platform refused is in no log line and not in the dead letter.
        logged = "".join(capfd.readouterr())
        assert "dispatch" in logged and "expired-token" not in logged
        assert b"expired-token" not in parked.body
        assert "expired-token" not in json.dumps(dict(parked.headers), default=str)

        await clinic.set_token(conv, "fixed-token")
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(aio_pika.Message(parked.body, content_type="application/json"),
                               routing_key=parked.headers[H_ORIGINAL_KEY])
        await clinic.until_status(conv, event.message_id, "sent")
        assert len(await ok_requests(sandbox, "whatsapp", conv.recipient)) == 1
        assert (await clinic.connection_row(conv))["healthy"] is True
        await channel.close()


class TestStatuses:
    async def status(self, conv, wamid: str, status: str, **fields) -> MessageStatus:
        return MessageStatus(tenant_id=conv.tenant.id, channel=conv.channel,
                             platform_account_id=conv.tenant.whatsapp_phone_number_id,
                             platform_message_id=wamid, status=status,
                             status_at=datetime.now(UTC), **fields)

    async def test_delivered_then_read_and_never_backwards(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        wamid = (await clinic.until_status(conv, event.message_id, "sent"))["platform_message_id"]
        await clinic.publish(await self.status(conv, wamid, "delivered"))
        await clinic.until_status(conv, event.message_id, "delivered")
        await clinic.publish(await self.status(conv, wamid, "read"))
        await clinic.until_status(conv, event.message_id, "read")
        await clinic.publish(await self.status(conv, wamid, "delivered"),
                             await self.status(conv, wamid, "sent"))
        await asyncio.sleep(0.5)
        assert await clinic.status_of(conv, event.message_id) == "read"

    async def test_failed_status_is_final_and_flags_the_conversation(self, clinic, sandbox,
                                                                      make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        wamid = (await clinic.until_status(conv, event.message_id, "sent"))["platform_message_id"]
        await clinic.publish(await self.status(conv, wamid, "failed", error_code=131026,
                                               error_title="Message undeliverable"))
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_code"] == 131026
        assert (await clinic.conversation_row(conv))["needs_attention"] is True
        await clinic.publish(await self.status(conv, wamid, "delivered"))
        await asyncio.sleep(0.5)
        assert await clinic.status_of(conv, event.message_id) == "failed"


class TestReadWatermark:
    async def test_a_conversation_read_marks_every_earlier_message_read(self, clinic, sandbox,
                                                                        make_tenant):
        tenant = await make_tenant()
        conv = await clinic.conversation(tenant, "facebook")
        first, second = clinic.outbound(conv), clinic.outbound(conv)
        await clinic.publish(first, second)
        await clinic.until_status(conv, first.message_id, "sent")
        await clinic.until_status(conv, second.message_id, "sent")
        await clinic.publish(MessageStatus(
            tenant_id=tenant.id, channel=conv.channel, platform_account_id=tenant.page_id,
            platform_message_id=conv.recipient, platform_user_id=conv.recipient,
            status="read", status_at=datetime.now(UTC), scope="conversation"))
        await clinic.until_status(conv, first.message_id, "read")
        await clinic.until_status(conv, second.message_id, "read")


class TestCrashWindow:
    async def test_a_stale_claim_is_not_sent_again_but_flagged(self, clinic, sandbox, make_tenant):
        from tistis_common.db import tenant_tx

        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
            # A worker claimed it, called the platform and died before its commit.
            await conn.execute(
                """INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel,
                                         direction, sender_type, content, status, updated_at)
                   VALUES ($1, $2, $3, $4, 'whatsapp', 'outbound', 'ai', 'hola', 'sending',
                           now() - interval '1 hour')""",
                event.message_id, conv.tenant.id, conv.conversation_id, conv.lead_id)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_title"] == "send_outcome_unknown"
        conversation = await clinic.conversation_row(conv)
        assert conversation["needs_attention"] and conversation["attention_reason"] == (
            "send_outcome_unknown")
        assert await sandbox.requests("whatsapp", conv.recipient) == []

    async def test_a_claim_whose_process_died_is_flagged_and_parked_not_sent_again(
        self, clinic, sandbox, make_tenant
    ):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.claimed(conv, event, claimer=123_456)  # no live session holds 123456
        await clinic.publish(event)  # the redelivery after that process was killed
        row = await clinic.until_status(conv, event.message_id, "failed")
        assert row["error_title"] == "send_outcome_unknown"
        assert (await clinic.conversation_row(conv))["needs_attention"] is True
        await asyncio.sleep(0.3)
        assert await sandbox.requests("whatsapp", conv.recipient) == []

    async def test_a_claim_of_a_live_process_is_left_to_it(self, clinic, sandbox, make_tenant,
                                                            other_dispatcher):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.claimed(conv, event, claimer=other_dispatcher)
        await clinic.publish(event)
        await asyncio.sleep(1.0)
        assert await clinic.status_of(conv, event.message_id) == "sending"
        assert await sandbox.requests("whatsapp", conv.recipient) == []


class TestStatusOfAPart:
    async def test_a_status_for_an_earlier_part_updates_the_message(self, clinic, sandbox,
                                                                    make_tenant):
        conv = await clinic.conversation(await make_tenant(), "facebook")
        event = clinic.outbound(conv, text=" ".join(f"Frase número {i}." for i in range(200)))
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        first, last = row["payload"]["part_ids"][0], row["platform_message_id"]
        assert first != last
        await clinic.publish(MessageStatus(
            tenant_id=conv.tenant.id, channel="facebook", platform_account_id=conv.tenant.page_id,
            platform_message_id=first, status="delivered", status_at=datetime.now(UTC)))
        await clinic.until_status(conv, event.message_id, "delivered")
