"""This process's lease (`tistis_common.lease`): a claim records its key in `messages.claimed_by`,
so `claimer_gone` tells a dead claimer from a busy one without any timeout."""

from __future__ import annotations

import asyncpg
from tistis_common.lease import ProcessLease, holder_gone

LOCK_CLASS = 7_420_300  # first key of the two-key advisory locks: "dispatcher claims"


def process_lease(url: str) -> ProcessLease:
    return ProcessLease(LOCK_CLASS, url=url, application_name="dispatcher")


async def claimer_gone(conn: asyncpg.Connection, key: int) -> bool:
    """True when no live session holds `key`'s lease (its process died)."""
    return await holder_gone(conn, LOCK_CLASS, key)
