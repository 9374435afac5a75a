"""The scorer's one handler: a score event (signals or an absolute score) for one lead.

All of it is one transaction: the lead row is locked first (concurrent events for one lead wait
for each other, so none is lost), the event is marked processed (a redelivery stops there and
returns the LeadClassified the first delivery kept in the outbox), then the history rows, the
lead, the band change and its kept LeadClassified are written together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from tistis_common import idempotency, metrics
from tistis_common.broker import PermanentError
from tistis_common.db import tenant_tx
from tistis_common.events import Event, LeadClassified, LeadScoreSet, LeadSignals, Signal
from tistis_common.ids import stable_id
from tistis_common.logging import get_logger

from . import repository as repo
from .config import InvalidScoringSettings, ScoringConfig
from .engagement import owed, rule_values
from .scoring import Change, apply, set_to, signal_points

log = get_logger(__name__)

CONSUMER = "scorer"

ScoreEvent = LeadSignals | LeadScoreSet


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool


async def handle_score_event(event: ScoreEvent, deps: Deps) -> Sequence[Event]:
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        config = await _config(conn, event)
        lead = await repo.lock_lead(conn, event.lead_id)
        if lead is None:
            raise PermanentError(f"lead {event.lead_id} not found for tenant {event.tenant_id}")
        if not await idempotency.first_delivery(conn, CONSUMER, event):
            log.info("score.duplicate", lead_id=str(event.lead_id))
            return await idempotency.kept(conn, CONSUMER, event.event_id)

        start = lead["score"] if await repo.has_history(conn, lead["id"]) else config.start
        changes = await _changes(conn, event, start, config)
        score = changes[-1][0].after if changes else start
        signals = event.signals if isinstance(event, LeadSignals) else []
        spam = lead["spam"] or Signal.SPAM in signals
        not_interested = lead["not_interested"] or Signal.NOT_INTERESTED in signals
        band = config.band(score)

        await repo.insert_changes(
            conn, tenant_id=event.tenant_id, lead_id=lead["id"], event_id=event.event_id,
            message_id=getattr(event, "message_id", None), changes=changes, reason=event.reason,
        )
        await repo.update_lead(conn, lead["id"], score=score, classification=band, spam=spam,
                               not_interested=not_interested)
        announced = None
        if band != lead["classification"] or (spam and not lead["spam"]):
            announced = await repo.insert_classification(
                conn, tenant_id=event.tenant_id, event_id=event.event_id, lead_id=lead["id"],
                previous=lead["classification"], classification=band, score=score, spam=spam,
            )
            classified = _classified(event, announced)
            await idempotency.keep(conn, CONSUMER, event.event_id, [classified])

    for _, source in changes:
        metrics.SCORE_CHANGES.labels(source).inc()
    log.info("score.applied", lead_id=str(event.lead_id), before=start, after=score,
             classification=band, changes=len(changes), spam=spam)
    if announced is None:
        return []
    if announced["previous"] != band:  # not for a spam flag alone
        metrics.LEADS_CLASSIFIED.labels(band).inc()
    return [classified]


async def _config(conn: asyncpg.Connection, event: ScoreEvent) -> ScoringConfig:
    try:
        return ScoringConfig.from_settings(await repo.scoring_settings(conn, event.tenant_id))
    except InvalidScoringSettings as exc:
        # Loud and replayable: an operator fixes tenants.settings and replays the dead letters.
        raise PermanentError(f"invalid scoring settings: {exc}") from exc


async def _changes(
    conn: asyncpg.Connection, event: ScoreEvent, start: int, config: ScoringConfig
) -> list[tuple[Change, str]]:
    """The history rows this event writes, each with its source, in the order applied."""
    if isinstance(event, LeadScoreSet):
        return [(set_to(start, event.score, config), event.source)]
    source: str = event.source
    changes = [(c, source) for c in apply(start, signal_points(event.signals, config), config)]
    if config.engagement_on:
        score = changes[-1][0].after if changes else start
        facts = await repo.engagement_facts(
            conn, event.lead_id, timedelta(hours=config.engagement.quick_response_hours)
        )
        due = owed(rule_values(facts, config.engagement), await repo.engagement_credited(conn, event.lead_id))
        changes += [(c, "rules") for c in apply(score, due, config)]
    return changes


def _classified(event: ScoreEvent, row: asyncpg.Record) -> LeadClassified:
    return LeadClassified(
        event_id=stable_id("lead.classified", event.event_id),
        tenant_id=event.tenant_id,
        occurred_at=row["created_at"],
        correlation_id=event.correlation_id or event.event_id,
        lead_id=row["lead_id"],
        score=row["score"],
        classification=row["classification"],
        previous=row["previous"],
        spam=row["spam"],
    )
