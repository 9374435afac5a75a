"""The registry of send attempts (tistis_dispatcher.attempts), on its own: a cancelled caller
leaves its attempt running, the next caller for the message waits for it, the drain at
shutdown waits for it and cancels what outlives the grace."""

from __future__ import annotations

import asyncio
import uuid

from tistis_dispatcher.attempts import Attempt, Attempts


class TestAttempts:
    async def test_a_cancelled_caller_leaves_the_attempt_running_and_the_next_one_waits(self):
        attempts, message = Attempts(), uuid.uuid4()
        release, order = asyncio.Event(), []

        async def first(attempt: Attempt) -> None:
            await release.wait()
            order.append("first")

        async def second(attempt: Attempt) -> None:
            order.append("second")

        caller = asyncio.ensure_future(attempts.run(message, first))
        await asyncio.sleep(0)
        caller.cancel()  # the broker closed the channel
        redelivery = asyncio.ensure_future(attempts.run(message, second))
        await asyncio.sleep(0.01)
        assert order == [] and attempts.live(message) is not None
        release.set()
        await redelivery
        assert order == ["first", "second"] and caller.cancelled()
        assert attempts.live(message) is None

    async def test_an_attempt_that_ends_holding_its_claim_is_handed_to_the_next(self):
        attempts, message = Attempts(), uuid.uuid4()
        seen: list[Attempt | None] = []

        async def stuck(attempt: Attempt) -> None:
            attempt.claimed = True  # could not give it back: the database was away

        async def next_one(attempt: Attempt) -> None:
            seen.append(attempt.previous)

        await attempts.run(message, stuck)
        await attempts.run(message, next_one)
        assert seen[0] is not None and seen[0].claimed

    async def test_drain_waits_for_attempts_and_cancels_those_past_the_grace(self):
        attempts = Attempts()
        finished, cancelled = [], []

        async def quick(attempt: Attempt) -> None:
            await asyncio.sleep(0.05)
            finished.append(1)

        async def endless(attempt: Attempt) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(1)
                raise

        callers = [asyncio.ensure_future(attempts.run(uuid.uuid4(), work))
                   for work in (quick, endless)]
        await asyncio.sleep(0)
        for caller in callers:
            caller.cancel()  # the consumers closed their channels
        await attempts.drain(0.5)
        assert finished == [1] and cancelled == [1]
