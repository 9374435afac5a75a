"""This process's send attempts, one at a time per message: what keeps a send from being
abandoned half-way, and what tells a claim of ours that is live from one that is not.

Each attempt (claim -> rules -> platform call(s) -> record the outcome) runs in a task of its
own, and the consumer's handler only waits for it, shielded. When the broker closes the channel
(a restart: CONNECTION_FORCED), aiormq cancels the handler's task: its wait ends, the send goes
on and records its outcome. The acknowledgement of the delivery and the record of the send are
independent: the redelivery finds the message here, waits for that attempt and then reads the
final status (a duplicate: acked, nothing sent). Without this, the cancelled attempt kept its
claim and its own process took the claim for a send in flight until the retries ran out.

An attempt that ends still holding its claim (it could not give it back or record its outcome,
the database being away) stays here with what it knows, for the next attempt at the message:
no platform call made -> that attempt takes the claim over and sends; an outcome known ->
it writes it; a call made with no outcome (cancelled mid-call at shutdown) -> unknown, flagged
for a human. A claim of this process's lease with no entry here is treated as unknown too.

Like the ai-responder's `Attempts` (one live attempt per conversation, its lease named by the
process's key), but holding the task itself: the dispatcher must wait for it, not only know it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tistis_common.logging import get_logger

if TYPE_CHECKING:
    import asyncpg

log = get_logger(__name__)

# At shutdown, how long attempts cancelled past the grace get to give their claims back.
CANCELLED_CLEANUP_SECONDS = 5.0


@dataclass(eq=False)
class Attempt:
    """One attempt at one message. `previous`: the attempt before it, when that one ended
    holding the claim."""

    previous: Attempt | None = None
    claimed: bool = False  # holds the row's claim (sending, claimed_by = this process)
    called: bool = False  # a platform call that sends the message has started
    # The outcome of a platform call, not recorded yet (the database was away).
    unwritten: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    task: asyncio.Future[None] | None = None


class Attempts:
    def __init__(self) -> None:
        self._by_message: dict[uuid.UUID, Attempt] = {}

    def live(self, message_id: uuid.UUID) -> Attempt | None:
        attempt = self._by_message.get(message_id)
        return attempt if attempt is not None and attempt.task is not None \
            and not attempt.task.done() else None

    async def run(self, message_id: uuid.UUID,
                  work: Callable[[Attempt], Awaitable[None]]) -> None:
        """`work(attempt)` in a task of its own, after the live attempt at the same message (a
        redelivery waits for it); cancelling the caller leaves the attempt running."""
        while (earlier := self.live(message_id)) is not None:
            assert earlier.task is not None
            await asyncio.wait([earlier.task])  # a cancelled wait leaves the task running
        attempt = Attempt(previous=self._by_message.get(message_id))
        self._by_message[message_id] = attempt
        attempt.task = asyncio.ensure_future(work(attempt))
        attempt.task.add_done_callback(lambda _: self._ended(message_id, attempt))
        await asyncio.shield(attempt.task)

    def _ended(self, message_id: uuid.UUID, attempt: Attempt) -> None:
        """Kept while it holds the claim; else the earlier one it did not settle (e.g. the
        database was still away) is kept instead, or nothing."""
        assert attempt.task is not None
        if not attempt.task.cancelled() and (error := attempt.task.exception()) is not None:
            log.debug("send.attempt_ended", error=repr(error)[:300])  # the handler reports it
        earlier, attempt.previous = attempt.previous, None
        if self._by_message.get(message_id) is not attempt or attempt.claimed:
            return
        if earlier is not None and earlier.claimed:
            self._by_message[message_id] = earlier
        else:
            del self._by_message[message_id]

    async def drain(self, grace: float) -> None:
        """At shutdown: the attempts still running finish within `grace`; those that do not are
        cancelled (one before its platform call gives its claim back; one mid-call stays
        claimed, so the next dispatcher flags it as unknown: it may have reached the patient)."""
        live = [a.task for a in self._by_message.values()
                if a.task is not None and not a.task.done()]
        if not live:
            return
        log.info("send.attempts_draining", live=len(live))
        _, late = await asyncio.wait(live, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            log.warning("send.attempts_cancelled", cancelled=len(late))
            await asyncio.wait(late, timeout=CANCELLED_CLEANUP_SECONDS)
