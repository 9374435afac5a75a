"""The one idempotency and re-emission mechanism of every consumer (tables `processed_events` and
`event_outbox`). Every function takes a connection inside the caller's tenant transaction
(`db.tenant_tx`) and never commits, so the mark, the work and the kept events commit together:

    async with tenant_tx(pool, event.tenant_id) as conn:
        if not await first_delivery(conn, CONSUMER, event):
            return await kept(conn, CONSUMER, event.event_id)   # exactly what the first stored
        events = ...decide and write...
        await keep(conn, CONSUMER, event.event_id, events)
    return events                                               # the runner publishes them

A consumer's own pass (no consumed event, e.g. the scheduler's reminders) keeps its events with
`published=False`, publishes after its commit and marks them (`mark_published`); `unpublished` finds
what a crash left in between. The SQL lives here (a shared repository) so that no service
writes these two tables itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .events import EVENT_ADAPTER, Event

if TYPE_CHECKING:
    import asyncpg


async def first_delivery(conn: asyncpg.Connection, consumer: str, event: Event) -> bool:
    """Marks `event` processed by `consumer`; False when it already was (a redelivery)."""
    inserted = await conn.fetchval(
        """INSERT INTO processed_events (consumer, event_id, tenant_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        consumer, event.event_id, event.tenant_id,
    )
    return bool(inserted)


async def keep(conn: asyncpg.Connection, consumer: str, source_event_id: uuid.UUID | None,
               events: Sequence[Event], *, now: datetime | None = None,
               published: bool = True) -> None:
    """Stores the events one delivery of `source_event_id` decided, in order (None: a pass of the
    consumer's own). `published`: the runner publishes a consumer's returned events, so they are
    kept as published; a pass keeps them unpublished until it `mark_published` them. An event id
    already kept stays as it was."""
    if not events:
        return
    at = now or datetime.now(UTC)
    await conn.executemany(
        """INSERT INTO event_outbox (event_id, tenant_id, consumer, source_event_id, position, body,
                                     created_at, published_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, CASE WHEN $8 THEN $7::timestamptz END)
           ON CONFLICT DO NOTHING""",
        [(e.event_id, e.tenant_id, consumer, source_event_id, n, e.model_dump(mode="json"), at,
          published) for n, e in enumerate(events)],
    )


async def kept(conn: asyncpg.Connection, consumer: str, source_event_id: uuid.UUID) -> list[Event]:
    """The events the first delivery of `source_event_id` kept, in the order it decided them."""
    rows = await conn.fetch(
        """SELECT body FROM event_outbox WHERE consumer = $1 AND source_event_id = $2
           ORDER BY created_at, position, event_id""",
        consumer, source_event_id,
    )
    return [EVENT_ADAPTER.validate_python(r["body"]) for r in rows]


async def unpublished(conn: asyncpg.Connection, consumer: str, before: datetime,
                      limit: int = 200) -> list[Event]:
    """The consumer's kept events still unpublished since before `before`, oldest first, locked
    (SKIP LOCKED: another replica republishing them at the same time is not waited for)."""
    rows = await conn.fetch(
        """SELECT body FROM event_outbox
           WHERE consumer = $1 AND published_at IS NULL AND created_at <= $2
           ORDER BY created_at, position, event_id LIMIT $3 FOR UPDATE SKIP LOCKED""",
        consumer, before, limit,
    )
    return [EVENT_ADAPTER.validate_python(r["body"]) for r in rows]


async def mark_published(conn: asyncpg.Connection, events: Sequence[Event], now: datetime) -> None:
    """Marks kept events as published (after the publisher confirmed them)."""
    await conn.execute(
        "UPDATE event_outbox SET published_at = $2 WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events], now,
    )
