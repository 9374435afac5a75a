"""What the chaos scenarios promise, checked against the database and the fake platforms."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
from tistis_common.topology import UNROUTED

from .cluster import Cluster
from .load import Webhook


@dataclass
class Outcome:
    accepted: int
    stored_once: int = 0
    stored_twice_or_more: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    replied_once: int = 0
    replied_twice_or_more: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    # No reply because the dispatcher was killed mid-send: outcome unknown, so not sent again
    # but flagged and dead-lettered with its error (the one crash window, docs/reliability.md).
    parked_unknown: list[str] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    stuck: dict[str, dict] = field(default_factory=dict)
    settle_seconds: float = 0.0

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} accepted webhooks not stored: {self.lost[:5]}")
        if self.stored_twice_or_more:
            out.append(f"{len(self.stored_twice_or_more)} stored twice: {self.stored_twice_or_more[:5]}")
        if self.replied_twice_or_more:
            out.append(f"{len(self.replied_twice_or_more)} patients got 2+ replies: "
                       f"{self.replied_twice_or_more[:5]}")
        if self.unanswered:
            out.append(f"{len(self.unanswered)} patients got no reply: {self.unanswered[:5]}; "
                       f"dead letters: {self.dead_letters}")
        if len(self.parked_unknown) > sum(self.dead_letters.values()):
            out.append(f"{len(self.parked_unknown)} sends of unknown outcome but only "
                       f"{self.dead_letters} dead letters")
        if self.stuck:
            out.append(f"queues not drained: {self.stuck}")
        return out


async def _inbound_counts(cluster: Cluster, hooks: list[Webhook]) -> Counter:
    conn = await asyncpg.connect(cluster.superuser_url)  # the superuser sees every tenant
    try:
        rows = await conn.fetch(
            """SELECT tenant_id, channel, platform_message_id, count(*) AS n FROM messages
               WHERE direction = 'inbound' AND platform_message_id = ANY($1::text[])
               GROUP BY 1, 2, 3""",
            [h.message_id for h in hooks],
        )
    finally:
        await conn.close()
    return Counter({(r["tenant_id"], r["channel"], r["platform_message_id"]): r["n"] for r in rows})


async def _outcome_unknown(cluster: Cluster, recipients: list[str]) -> set[str]:
    """Patients whose reply is `failed / send_outcome_unknown` (the dispatcher's crash window)."""
    conn = await asyncpg.connect(cluster.superuser_url)
    try:
        rows = await conn.fetch(
            """SELECT DISTINCT COALESCE(c.platform_conversation_id, l.platform_user_id) AS r
               FROM messages m JOIN leads l ON l.id = m.lead_id
               JOIN conversations c ON c.id = m.conversation_id
               WHERE m.direction = 'outbound' AND m.status = 'failed'
                 AND m.error_title = 'send_outcome_unknown'
                 AND (l.platform_user_id = ANY($1::text[])
                      OR c.platform_conversation_id = ANY($1::text[]))""",
            recipients,
        )
    finally:
        await conn.close()
    return {r["r"] for r in rows}


def _replies(cluster: Cluster, hooks: list[Webhook]) -> Counter:
    wanted = {h.recipient for h in hooks}
    rows = httpx.get(f"{cluster.sandbox_url}/_sandbox/requests", timeout=30).json()["requests"]
    return Counter(r["recipient"] for r in rows
                   if r.get("recipient") in wanted and 200 <= r["status"] < 300
                   and r["target"] != "anthropic" and r.get("kind", "message") == "message")


def _queues(cluster: Cluster) -> tuple[dict[str, dict], dict[str, int]]:
    stuck, dead = {}, {}
    for name, depth in cluster.queues().items():
        if name.endswith(".dlq"):
            if depth["ready"]:
                dead[name] = depth["ready"]
        elif name != UNROUTED and (depth["ready"] or depth["unacked"]):
            stuck[name] = depth
    return stuck, dead


def dead_letter_count(cluster: Cluster) -> int:
    """Everything in the cluster's dead-letter queues now (they keep what earlier scenarios left)."""
    return sum(_queues(cluster)[1].values())


async def settle_and_check(cluster: Cluster, hooks: list[Webhook], timeout: float = 120) -> Outcome:
    """Wait until every accepted patient message got its reply (or time runs out), then judge."""
    accepted = [h for h in hooks if h.accepted_at]
    started = time.monotonic()
    quiet = 0  # consecutive checks with every reply in and every queue (retries too) empty
    while quiet < 3 and time.monotonic() - started < timeout:
        replies = _replies(cluster, accepted)
        stuck, dead = _queues(cluster)
        unknown = await _outcome_unknown(cluster, [h.recipient for h in accepted])
        settled = len(set(replies) | unknown) >= len(accepted) and not stuck
        quiet = quiet + 1 if settled else 0
        await asyncio.sleep(0.5)
    replies = _replies(cluster, accepted)
    stuck, dead = _queues(cluster)
    counts = await _inbound_counts(cluster, accepted)
    unknown = await _outcome_unknown(cluster, [h.recipient for h in accepted])
    outcome = Outcome(accepted=len(accepted), dead_letters=dead, stuck=stuck,
                      settle_seconds=time.monotonic() - started)
    for h in accepted:
        n = counts.get((h.tenant.id, h.channel, h.message_id), 0)
        if n == 0:
            outcome.lost.append(h.message_id)
        elif n == 1:
            outcome.stored_once += 1
        else:
            outcome.stored_twice_or_more.append(h.message_id)
        r = replies.get(h.recipient, 0)
        if r == 0 and h.recipient in unknown:
            outcome.parked_unknown.append(h.recipient)
        elif r == 0:
            outcome.unanswered.append(h.recipient)
        elif r == 1:
            outcome.replied_once += 1
        else:
            outcome.replied_twice_or_more.append(h.recipient)
    return outcome
