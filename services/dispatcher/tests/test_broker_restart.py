"""Through a broker restart every patient still gets exactly one reply (issue 22).

The broker closes the outbound consumer's channel at a chosen step of a send: right after the
claim, right after the platform call, right after the outcome is recorded. aiormq then cancels
the channel's consumer tasks (what CONNECTION_FORCED does on a restart, channel by channel), the
unacknowledged delivery comes back on the reopened channel, and the same process handles it
again. The channel's close is a real one by the broker: a passive declare of a queue that does not exist
is answered with `Channel.Close` 404 (AMQP 0-9-1 reference, "queue.declare passive": "If not set
and the queue exists, the server MUST check..., raise a channel exception with reply code 404
(not found)" - rabbitmq.com/amqp-0-9-1-reference.html#queue.declare.passive), and aio-pika's
robust channel reopens and consumes again (aio_pika/robust_channel.py `_on_close`). The
handlers in flight are cancelled as aiormq does when the whole connection is closed.
The steps are hooked by wrapping the dispatcher's own functions, which still run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tistis_common.db import tenant_tx
from tistis_common.testing.plugin import broker_closes_channel, eventually
from tistis_common.topology import DISPATCHER_OUTBOUND
from tistis_dispatcher import repository as repo


async def ok_requests(sandbox, recipient: str) -> list[dict]:
    return [r for r in await sandbox.requests("whatsapp", recipient) if r["status"] == 200]


def sends(conv, outcome: str) -> float:
    return REGISTRY.get_sample_value("tistis_sends_total", {
        "tenant": conv.tenant.slug, "channel": conv.channel, "outcome": outcome}) or 0


def outbound_consumer(dispatcher) -> Any:
    name = DISPATCHER_OUTBOUND["whatsapp"].name
    return next(c for c in dispatcher.consumers if c.spec.name == name)


async def broker_closes_the_channel(consumer) -> None:
    """The broker closes the consumer's channel and the handlers in flight are cancelled, as
    aiormq cancels a closed connection's consumer tasks (`FutureStore.reject_all`; a closed
    channel alone leaves them running). Returns once they stopped, unless it runs in one."""
    handlers = set(consumer._in_flight)
    await broker_closes_channel(consumer._channel)
    for task in handlers:
        task.cancel()
    others = handlers - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=5)
    assert all(task.done() for task in others)
    await asyncio.sleep(0)  # a cancelled caller stops here


def until(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()
    return check


async def exactly_one_send(clinic, sandbox, conv, event) -> None:
    row = await clinic.until_status(conv, event.message_id, "sent")
    # The redelivery was handled too: it found the send done (or waited for it) and sent nothing.
    await eventually(until(lambda: sends(conv, "duplicate") >= 1), 10)
    assert sends(conv, "sent") == 1
    requests = await ok_requests(sandbox, conv.recipient)
    assert len(requests) == 1
    assert row["platform_message_id"] == requests[0]["answered_id"]


@pytest.fixture
def closed_after(clinic, sandbox, make_tenant, dispatcher, monkeypatch):
    """A send whose channel the broker closes right after `owner.name` (which still runs)
    returns for its message the first time; it must end with exactly one send."""

    async def scenario(owner: Any, name: str,
                       of_our_message: Callable[[Any, tuple, Any], bool]) -> None:
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        original, closed = getattr(owner, name), []

        async def then_close(*args: Any) -> Any:
            result = await original(*args)
            if not closed and of_our_message(event, args, result):
                closed.append(True)
                await broker_closes_the_channel(outbound_consumer(dispatcher))
            return result

        monkeypatch.setattr(owner, name, then_close)
        await clinic.publish(event)
        await exactly_one_send(clinic, sandbox, conv, event)
        assert closed

    return scenario


class TestBrokerClosesTheChannelMidSend:
    async def test_right_after_the_claim(self, closed_after):
        await closed_after(repo, "claim_outbound", lambda event, args, row: (
            args[1].message_id == event.message_id and row is not None and row.claimed))

    async def test_right_after_the_platform_call(self, closed_after, dispatcher):
        await closed_after(dispatcher.deps.platform, "send", lambda event, args, _: (
            args[1].get("to") == event.recipient_id))

    async def test_right_after_recording(self, closed_after):
        await closed_after(repo, "finish_sent", lambda event, args, _: (
            args[1] == event.message_id))


class TestAnAttemptThatStopsBeforeItsCall:
    async def test_cancelled_at_shutdown_it_gives_the_claim_back(self, clinic, sandbox,
                                                                 make_tenant, dispatcher,
                                                                 monkeypatch):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        claimed, never = asyncio.Event(), asyncio.Event()
        claim = repo.claim_outbound

        async def claim_then_hang(conn, e, claimer):
            row = await claim(conn, e, claimer)
            if e.message_id == event.message_id and row is not None and row.claimed:
                claimed.set()
                await never.wait()  # e.g. a token refresh that does not end before the grace
            return row

        monkeypatch.setattr(repo, "claim_outbound", claim_then_hang)
        await clinic.publish(event)
        await asyncio.wait_for(claimed.wait(), 10)
        assert await clinic.status_of(conv, event.message_id) == "sending"
        await dispatcher.deps.attempts.drain(0)  # the shutdown grace is over
        assert await clinic.status_of(conv, event.message_id) == "pending"
        assert await ok_requests(sandbox, conv.recipient) == []
        # Its delivery comes back once the channel goes (a restart, here the broker closing it).
        monkeypatch.setattr(repo, "claim_outbound", claim)
        await broker_closes_the_channel(outbound_consumer(dispatcher))
        await clinic.until_status(conv, event.message_id, "sent")
        assert len(await ok_requests(sandbox, conv.recipient)) == 1


class TestWaitingForAnotherProcessesClaim:
    async def test_the_wait_does_not_spend_the_retry_budget(self, clinic, sandbox, make_tenant,
                                                            dispatcher, other_dispatcher,
                                                            monkeypatch):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        await clinic.claimed(conv, event, claimer=other_dispatcher)
        tries: list[object] = []
        claim = repo.claim_outbound

        async def counted(conn, e, claimer):
            if e.message_id == event.message_id:
                tries.append(e)
            return await claim(conn, e, claimer)

        monkeypatch.setattr(repo, "claim_outbound", counted)
        await clinic.publish(event)
        budget = len(dispatcher.settings.retry_delays) + 1  # deliveries before a dead letter
        await eventually(until(lambda: len(tries) > budget + 1), 15)
        assert await clinic.status_of(conv, event.message_id) == "sending"
        # The other dispatcher gives the claim back (its rules could not decide): ours sends.
        async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
            await conn.execute("UPDATE messages SET status = 'pending' WHERE id = $1",
                               event.message_id)
        await clinic.until_status(conv, event.message_id, "sent")
        assert len(await ok_requests(sandbox, conv.recipient)) == 1


class TestTheDatabaseAwayAfterTheCall:
    """PostgreSQL restarting between the platform call and the record: the outcome is kept."""

    def failing_finish_sent(self, message_id, times: int) -> Callable[..., Awaitable[None]]:
        import asyncpg

        finish_sent = repo.finish_sent
        failures: list[int] = []

        async def finish_sent_while_restarting(conn, mid, *args):
            if mid == message_id and len(failures) < times:
                failures.append(1)
                raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
            await finish_sent(conn, mid, *args)
        return finish_sent_while_restarting

    async def test_the_record_is_retried_until_the_database_is_back(
        self, clinic, sandbox, make_tenant, monkeypatch
    ):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        monkeypatch.setattr(repo, "finish_sent", self.failing_finish_sent(event.message_id, 2))
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        requests = await ok_requests(sandbox, conv.recipient)
        assert len(requests) == 1 and row["platform_message_id"] == requests[0]["answered_id"]

    async def test_an_outcome_not_recorded_in_time_is_written_by_the_next_attempt(
        self, clinic, sandbox, make_tenant, monkeypatch
    ):
        from tistis_dispatcher import service

        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv)
        monkeypatch.setattr(service, "RECORD_RETRY_DELAYS", (0.01,))
        monkeypatch.setattr(repo, "finish_sent", self.failing_finish_sent(event.message_id, 2))
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")
        await eventually(until(lambda: sends(conv, "duplicate") >= 1), 10)
        requests = await ok_requests(sandbox, conv.recipient)
        assert len(requests) == 1 and row["platform_message_id"] == requests[0]["answered_id"]
