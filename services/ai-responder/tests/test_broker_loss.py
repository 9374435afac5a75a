"""A reply through a lost broker channel: the broker closes the replies consumer's channel at
one exact point of a reply, aiormq cancels the handler of the unacked `ReplyDue`, the robust
channel opens again and the broker redelivers it. Each case ends with one stored reply, one
model call and one `OutboundMessage` id (the dispatcher sends an id once), and no lease left
behind. Real broker, database and fake Anthropic API; the service runs in-process so that the
point of the break is exact (a wrapper around one of its own steps has the broker close the
channel and waits there for the cancellation). The channel, not the whole connection: with the
connection the publisher's channel goes too, and a redelivery that races its reopening stays
unacked (a runner matter, `tistis_common.broker`, reported with issue 22).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from tistis_ai_responder import repository as repo
from tistis_ai_responder import service
from tistis_ai_responder.main import start
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import broker_closes_channel, running

from .test_model_pace import OPEN_ALL_DAY, replies_per_conversation, tool_answer


class Break:
    """Closes the service's broker connection the first time a wrapped step is reached."""

    def __init__(self) -> None:
        self.channel = None  # the replies consumer's, once the service runs
        self.done = False
        self.cancelled = False

    def first(self) -> bool:
        if self.done:
            return False
        self.done = True
        return True

    async def close_and_hold(self) -> None:
        """Close, then stay here until the closed channel cancels the handler."""
        await broker_closes_channel(self.channel)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("the handler was not cancelled when its channel closed")

    async def close_and_wait_for(self, handler: asyncio.Task) -> None:
        """Close, then go on once the handler is being cancelled (this step runs apart from it)."""
        await broker_closes_channel(self.channel)
        for _ in range(500):
            if handler.cancelling():
                self.cancelled = True
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the handler was not cancelled when its channel closed")


@pytest.fixture
async def broken(own, ai_settings, sandbox, make_tenant):
    settings, bus = own
    tenant = await make_tenant(OPEN_ALL_DAY)
    await sandbox.script("anthropic", tool_answer("Con gusto le ayudo."))
    return settings.model_copy(update=ai_settings), bus, tenant, Break()


async def one_reply_each_way(settings, bus, tenant, brk, sandbox, app_pool,
                             patient_message) -> None:
    async with running(start, settings) as runtime:
        brk.channel = _replies(runtime)._channel
        await bus.publish(patient_message(tenant, "hola, quiero una cita"))
        outs = await bus.wait(tenant.id, "message.outbound", timeout=15)
        await asyncio.sleep(0.5)  # a second attempt, if any, would have asked the model by now
        attempts = _attempts(runtime)
        assert not attempts.live and not attempts._unreleased
    counts = await replies_per_conversation(app_pool, tenant.id)
    assert list(counts.values()) == [1]
    assert len(await sandbox.requests("anthropic")) == 1
    assert len({o.message_id for o in await bus.events(tenant.id, "message.outbound")}) == 1
    assert outs[0].text == "Con gusto le ayudo."
    assert await _leases(app_pool, tenant.id) == []


def _replies(runtime):
    return next(c for c in runtime.consumers if c.spec.name == "ai-responder.replies")


def _attempts(runtime):
    """The service's registry of attempts, through the handler bound to the replies queue."""
    return _replies(runtime).handler.keywords["deps"].attempts


async def _leases(pool, tenant_id) -> list[uuid.UUID]:
    async with tenant_tx(pool, tenant_id) as conn:
        return [r["reply_lease"] for r in await conn.fetch(
            "SELECT reply_lease FROM conversations WHERE reply_lease IS NOT NULL")]


class TestBrokerLostDuringAReply:
    async def test_closed_right_after_the_claim_gives_the_lease_back_and_the_redelivery_replies(
        self, broken, sandbox, app_pool, patient_message, monkeypatch
    ):
        settings, bus, tenant, brk = broken
        claim = repo.claim_and_read
        lease_at_redelivery: list[object] = []

        async def claim_then_break(conn, conversation_id, *args):
            if not brk.first():
                lease_at_redelivery.extend(await _leases(app_pool, tenant.id))
                return await claim(conn, conversation_id, *args)
            state = await claim(conn, conversation_id, *args)
            assert state.claimed
            await brk.close_and_hold()

        monkeypatch.setattr(repo, "claim_and_read", claim_then_break)
        await one_reply_each_way(settings, bus, tenant, brk, sandbox, app_pool, patient_message)
        assert brk.cancelled
        # Given back by the cancelled attempt itself: a replica of its own would not wait on it.
        assert lease_at_redelivery == []

    async def test_closed_right_after_the_model_answered_records_the_reply_and_asks_once(
        self, broken, sandbox, app_pool, patient_message, monkeypatch
    ):
        settings, bus, tenant, brk = broken
        ask, store = service._ask_model, service._store
        handler: list[asyncio.Task] = []

        async def ask_model(*args):
            handler.append(asyncio.current_task())  # type: ignore[arg-type]
            return await ask(*args)

        async def break_then_store(*args):
            if brk.first():
                await brk.close_and_wait_for(handler[0])  # cancelled while the reply is recorded
            return await store(*args)

        monkeypatch.setattr(service, "_ask_model", ask_model)
        monkeypatch.setattr(service, "_store", break_then_store)
        await one_reply_each_way(settings, bus, tenant, brk, sandbox, app_pool, patient_message)
        assert brk.cancelled

    async def test_closed_right_after_the_reply_was_stored_reemits_it_on_redelivery(
        self, broken, sandbox, app_pool, patient_message, monkeypatch
    ):
        settings, bus, tenant, brk = broken
        respond = service.respond

        async def respond_then_break(deps, due):
            events = await respond(deps, due)
            if brk.first():
                await brk.close_and_hold()  # stored, its events not yet published nor acked
            return events

        monkeypatch.setattr(service, "respond", respond_then_break)
        await one_reply_each_way(settings, bus, tenant, brk, sandbox, app_pool, patient_message)
        assert brk.cancelled
