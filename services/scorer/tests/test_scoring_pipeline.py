"""Score events cross the real RabbitMQ into the scorer and PostgreSQL: points, bands, history,
redelivery, spam, concurrency and the legacy engagement rules."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from tistis_common.broker import Publisher, connect
from tistis_common.db import connect as db_connect
from tistis_common.db import tenant_tx
from tistis_common.events import (
    LeadClassified,
    LeadScoreSet,
    LeadSignals,
    Signal,
    parse_event,
    routing_pattern,
)
from tistis_common.testing.plugin import eventually, running
from tistis_common.topology import SCORER_SIGNALS, declare_topology
from tistis_scorer.main import start as start_scorer

S = Signal

# -- helpers ---------------------------------------------------------------------------------


async def create_lead(pool, tenant_id: uuid.UUID, interested_services: list[str] | None = None) -> uuid.UUID:
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetchval(
            """INSERT INTO leads (tenant_id, channel, platform_user_id, interested_services)
               VALUES ($1, 'whatsapp', $2, $3) RETURNING id""",
            tenant_id, f"52155{uuid.uuid4().int % 10**8:08d}", interested_services or [],
        )


async def set_scoring(settings, tenant_id: uuid.UUID, scoring: dict) -> None:
    """What an operator does: tenants.settings is the ops tool's table, not the app role's."""
    conn = await db_connect(settings.migration_database_url)
    try:
        await conn.execute(
            "UPDATE tenants SET settings = jsonb_set(settings, '{scoring}', $2::jsonb) WHERE id = $1",
            tenant_id, scoring,
        )
    finally:
        await conn.close()


async def lead_row(pool, tenant_id: uuid.UUID, lead_id: uuid.UUID):
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetchrow(
            "SELECT score, classification, spam, not_interested FROM leads WHERE id = $1", lead_id
        )


async def history(pool, tenant_id: uuid.UUID, lead_id: uuid.UUID):
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetch(
            """SELECT event_id, signal, points, rule_points, score_before, score_after, source
               FROM lead_score_events WHERE lead_id = $1 ORDER BY id""",
            lead_id,
        )


def history_of_size(pool, tenant_id, lead_id, n: int):
    async def check():
        rows = await history(pool, tenant_id, lead_id)
        return rows if len(rows) >= n else None

    return check


def signals(tenant_id: uuid.UUID, lead_id: uuid.UUID, *found: Signal, **kw) -> LeadSignals:
    return LeadSignals(tenant_id=tenant_id, lead_id=lead_id, message_id=uuid.uuid4(),
                       signals=list(found), **kw)


def assert_history_explains(rows, start: int, score: int) -> None:
    assert sum(r["points"] for r in rows) == score - start
    for earlier, later in itertools.pairwise(rows):
        assert later["score_before"] == earlier["score_after"]
    for r in rows:
        assert r["score_after"] - r["score_before"] == r["points"]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def publisher(settings):
    connection = await connect(settings.rabbitmq_url)
    channel = await connection.channel()
    await declare_topology(channel, settings.retry_delays)
    publisher = await Publisher.open(connection)
    yield publisher
    await connection.close()


@pytest.fixture
async def classified(settings):
    """Every LeadClassified published meanwhile, as parsed events."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    channel = await connection.channel()
    exchange = await declare_topology(channel, settings.retry_delays)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=routing_pattern(LeadClassified))
    seen: list[LeadClassified] = []

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            seen.append(parse_event(message.body))

    await queue.consume(collect)
    yield seen
    await connection.close()


@pytest.fixture
async def scorer(settings):
    async with running(start_scorer, settings) as runtime:
        yield runtime


def of_lead(seen: list[LeadClassified], lead_id: uuid.UUID) -> list[LeadClassified]:
    return [e for e in seen if e.lead_id == lead_id]


def announced(seen: list[LeadClassified], lead_id: uuid.UUID, at_least: int = 1, **match):
    """For `eventually`: the lead's LeadClassified events (with the given fields), once enough."""

    async def check():
        found = [e for e in of_lead(seen, lead_id)
                 if all(getattr(e, k) == v for k, v in match.items())]
        return found if len(found) >= at_least else None

    return check


def count_handled(runtime) -> dict[str, int]:
    """Counts the events the runtime's scorer consumer handles (the real handler still runs)."""
    [consumer] = [c for c in runtime.consumers if c.spec.name == SCORER_SIGNALS.name]
    counter = {"n": 0}
    real = consumer.handler

    async def counting(event):
        counter["n"] += 1
        return await real(event)

    consumer.handler = counting
    return counter


# -- tests -----------------------------------------------------------------------------------


class TestGuideTable:
    @pytest.mark.parametrize(
        ("signal", "points"),
        [(S.INTERESTED, 10), (S.URGENT, 15), (S.BUDGET_MENTIONED, 20), (S.DECISION_MAKER, 15),
         (S.COMPARING, 5), (S.NOT_INTERESTED, -20), (S.SPAM, -50)],
    )
    async def test_each_signal_moves_the_score_by_its_points(
        self, scorer, publisher, settings, app_pool, make_tenant, signal, points
    ):
        tenant = await make_tenant()
        await set_scoring(settings, tenant.id, {"start": 50})  # room both ways: nothing clamps
        lead = await create_lead(app_pool, tenant.id)
        await publisher.publish(signals(tenant.id, lead, signal, source="ai"))
        [row] = await eventually(history_of_size(app_pool, tenant.id, lead, 1))
        assert (row["signal"], row["points"], row["rule_points"]) == (signal.value, points, points)
        assert (row["score_before"], row["score_after"], row["source"]) == (50, 50 + points, "ai")
        assert (await lead_row(app_pool, tenant.id, lead))["score"] == 50 + points

    @pytest.mark.parametrize(
        ("steps", "band"),
        [
            ([[S.BUDGET_MENTIONED, S.DECISION_MAKER]], "cold"),  # 35
            ([[S.BUDGET_MENTIONED, S.DECISION_MAKER, S.COMPARING]], "warm"),  # 40
            ([[S.BUDGET_MENTIONED, S.URGENT, S.DECISION_MAKER], [S.INTERESTED]], "warm"),  # 60
            ([[S.BUDGET_MENTIONED, S.URGENT, S.DECISION_MAKER], [S.INTERESTED, S.INTERESTED],
              [S.INTERESTED]], "hot"),  # 70
        ],
    )
    async def test_bands_follow_the_score(
        self, scorer, publisher, app_pool, make_tenant, classified, steps, band
    ):
        tenant = await make_tenant()
        lead = await create_lead(app_pool, tenant.id)
        for found in steps:
            await publisher.publish(signals(tenant.id, lead, *found))
        expected_rows = sum(len(set(found)) for found in steps)
        await eventually(history_of_size(app_pool, tenant.id, lead, expected_rows))
        row = await lead_row(app_pool, tenant.id, lead)
        assert row["classification"] == band
        if band != "cold":
            news = await eventually(announced(classified, lead))
            # announced when the band changed, not on every point
            assert news[-1].classification == band
            assert news[0].previous == "cold"


class TestConcurrency:
    async def test_two_hundred_signals_from_two_scorers_add_up_exactly(
        self, settings, publisher, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        await set_scoring(settings, tenant.id, {"max": 100_000})  # nothing clamps
        lead = await create_lead(app_pool, tenant.id)
        cycle = [S.INTERESTED, S.URGENT, S.BUDGET_MENTIONED, S.DECISION_MAKER, S.COMPARING]
        events = [signals(tenant.id, lead, cycle[i % len(cycle)]) for i in range(200)]
        expected = sum({S.INTERESTED: 10, S.URGENT: 15, S.BUDGET_MENTIONED: 20,
                        S.DECISION_MAKER: 15, S.COMPARING: 5}[e.signals[0]] for e in events)
        async with (
            running(start_scorer, settings, prefetch=8) as one,
            running(start_scorer, settings, prefetch=8) as two,
        ):
            handled = {"one": count_handled(one), "two": count_handled(two)}
            await publisher.publish_all(events)
            rows = await eventually(history_of_size(app_pool, tenant.id, lead, 200), timeout=60)
        # both scorers took their share of the same lead's events
        assert handled["one"]["n"] > 0 and handled["two"]["n"] > 0
        assert handled["one"]["n"] + handled["two"]["n"] >= 200
        row = await lead_row(app_pool, tenant.id, lead)
        assert (len(rows), row["score"]) == (200, expected)
        assert {r["event_id"] for r in rows} == {e.event_id for e in events}
        assert_history_explains(rows, 0, expected)


class TestRedelivery:
    async def test_the_same_event_twice_counts_once_and_announces_the_same_change(
        self, scorer, publisher, app_pool, make_tenant, classified
    ):
        tenant = await make_tenant()
        lead = await create_lead(app_pool, tenant.id)
        event = signals(tenant.id, lead, S.BUDGET_MENTIONED, S.URGENT, S.INTERESTED)  # 45: warm
        await publisher.publish(event)
        await publisher.publish(event)
        # a later event proves the duplicate was consumed, not just waiting
        await publisher.publish(signals(tenant.id, lead, S.COMPARING))
        await eventually(history_of_size(app_pool, tenant.id, lead, 4))
        first, again = await eventually(announced(classified, lead, at_least=2))
        assert first == again  # same id and content: downstream drops the repeat
        await asyncio.sleep(0.3)  # anything doubled would land now
        rows = await history(app_pool, tenant.id, lead)
        assert [r["signal"] for r in rows] == ["budget_mentioned", "urgent", "interested", "comparing"]
        assert (await lead_row(app_pool, tenant.id, lead))["score"] == 50

    async def test_a_signal_repeated_in_one_event_counts_once(
        self, scorer, publisher, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        lead = await create_lead(app_pool, tenant.id)
        await publisher.publish(signals(tenant.id, lead, S.INTERESTED, S.INTERESTED))
        await publisher.publish(signals(tenant.id, lead, S.COMPARING))
        await eventually(history_of_size(app_pool, tenant.id, lead, 2))
        assert (await lead_row(app_pool, tenant.id, lead))["score"] == 15


class TestSpamAndDisinterest:
    async def test_a_spam_lead_is_flagged_and_announced_as_spam(
        self, scorer, publisher, app_pool, make_tenant, classified
    ):
        tenant = await make_tenant()
        lead = await create_lead(app_pool, tenant.id)
        await publisher.publish(signals(tenant.id, lead, S.INTERESTED, S.BUDGET_MENTIONED, S.URGENT))
        await publisher.publish(signals(tenant.id, lead, S.SPAM, source="rules"))
        spam_news = await eventually(announced(classified, lead, spam=True))
        assert (spam_news[0].classification, spam_news[0].previous, spam_news[0].score) == ("cold", "warm", 0)
        row = await lead_row(app_pool, tenant.id, lead)
        assert (row["spam"], row["score"], row["classification"]) == (True, 0, "cold")

    async def test_spam_on_a_fresh_lead_is_announced_though_the_band_stays(
        self, scorer, publisher, app_pool, make_tenant, classified
    ):
        tenant = await make_tenant()
        lead = await create_lead(app_pool, tenant.id)
        await publisher.publish(signals(tenant.id, lead, S.SPAM, source="rules"))
        [news] = await eventually(announced(classified, lead))
        assert (news.spam, news.previous, news.classification, news.score) == (True, "cold", "cold", 0)
        assert (await lead_row(app_pool, tenant.id, lead))["spam"] is True

    async def test_not_interested_flags_the_lead(self, scorer, publisher, app_pool, make_tenant):
        tenant = await make_tenant()
        lead = await create_lead(app_pool, tenant.id)
        await publisher.publish(signals(tenant.id, lead, S.NOT_INTERESTED))
        await eventually(history_of_size(app_pool, tenant.id, lead, 1))
        row = await lead_row(app_pool, tenant.id, lead)
        assert (row["not_interested"], row["spam"], row["score"]) == (True, False, 0)


class TestHistory:
    async def test_the_history_explains_the_score_through_clamps_and_absolute_scores(
        self, scorer, publisher, settings, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        await set_scoring(settings, tenant.id, {"start": 30})
        lead = await create_lead(app_pool, tenant.id)
        steps = [
            signals(tenant.id, lead, S.BUDGET_MENTIONED, S.URGENT, S.DECISION_MAKER, S.INTERESTED),
            signals(tenant.id, lead, S.BUDGET_MENTIONED, reason="asked for prices again"),  # 100
            LeadScoreSet(tenant_id=tenant.id, lead_id=lead, score=20, source="followup",
                         reason="3 follow-ups unanswered"),
            signals(tenant.id, lead, S.SPAM, source="rules"),  # clamps at 0
            LeadScoreSet(tenant_id=tenant.id, lead_id=lead, score=65, source="manual"),
        ]
        for event in steps:  # one after the other: the order is part of what is checked
            before = len(await history(app_pool, tenant.id, lead))
            await publisher.publish(event)
            await eventually(history_of_size(app_pool, tenant.id, lead, before + 1))
        rows = await history(app_pool, tenant.id, lead)
        row = await lead_row(app_pool, tenant.id, lead)
        assert (row["score"], row["classification"]) == (65, "warm")
        assert_history_explains(rows, 30, 65)
        assert [(r["signal"], r["points"], r["rule_points"], r["source"]) for r in rows] == [
            ("budget_mentioned", 20, 20, "ai"),
            ("urgent", 15, 15, "ai"),
            ("decision_maker", 15, 15, "ai"),
            ("interested", 10, 10, "ai"),
            ("budget_mentioned", 10, 20, "ai"),
            ("score_set", -80, -80, "followup"),
            ("spam", -20, -50, "rules"),
            ("score_set", 65, 65, "manual"),
        ]


class TestLegacyEngagement:
    async def test_legacy_rule_set_adds_engagement_once_per_change(
        self, scorer, publisher, settings, app_pool, make_tenant, classified
    ):
        tenant = await make_tenant()
        await set_scoring(settings, tenant.id, {"rule_set": "legacy"})
        lead = await create_lead(app_pool, tenant.id, interested_services=["implantes"])
        now = datetime.now(UTC)
        async with tenant_tx(app_pool, tenant.id) as conn:
            await conn.execute(
                """INSERT INTO services (tenant_id, name, high_value, keywords)
                   VALUES ($1, 'Implantes dentales', true, '{implantes,implante}')""",
                tenant.id,
            )
            conversation = await conn.fetchval(
                """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id)
                   VALUES ($1, $2, 'whatsapp', $3) RETURNING id""",
                tenant.id, lead, tenant.whatsapp_phone_number_id,
            )
            # lead, us, lead within the hour: 2 patient messages and a quick response
            for direction, sender, at in [("inbound", "lead", now - timedelta(hours=3)),
                                          ("outbound", "ai", now - timedelta(hours=2)),
                                          ("inbound", "lead", now - timedelta(hours=1))]:
                await conn.execute(
                    """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                             sender_type, content, sent_at)
                       VALUES ($1, $2, $3, 'whatsapp', $4, $5, 'x', $6)""",
                    tenant.id, conversation, lead, direction, sender, at,
                )
        await publisher.publish(signals(tenant.id, lead, S.INTERESTED))
        rows = await eventually(history_of_size(app_pool, tenant.id, lead, 4))
        # base 50 + interested 10 + 2 messages x 2 + high value 15 + quick response 10 = 89: HOT (>= 80)
        assert [(r["signal"], r["points"], r["source"]) for r in rows] == [
            ("interested", 10, "ai"),
            ("engagement.messages", 4, "rules"),
            ("engagement.high_value_service", 15, "rules"),
            ("engagement.quick_response", 10, "rules"),
        ]
        row = await lead_row(app_pool, tenant.id, lead)
        assert (row["score"], row["classification"]) == (89, "hot")
        await eventually(announced(classified, lead, classification="hot"))

        # one more patient message: only its +2 is new
        async with tenant_tx(app_pool, tenant.id) as conn:
            await conn.execute(
                """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                         sender_type, content, sent_at)
                   VALUES ($1, $2, $3, 'whatsapp', 'inbound', 'lead', 'y', now())""",
                tenant.id, conversation, lead,
            )
        await publisher.publish(signals(tenant.id, lead))
        rows = await eventually(history_of_size(app_pool, tenant.id, lead, 5))
        assert [(r["signal"], r["points"], r["source"]) for r in rows[4:]] == [
            ("engagement.messages", 2, "rules")
        ]
        assert_history_explains(rows, 50, 91)
        assert (await lead_row(app_pool, tenant.id, lead))["score"] == 91


async def dead_lettered(settings, event_id: uuid.UUID):
    """The dead letter of this event in scorer.signals.dlq; the others stay where they were."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        dlq = await channel.get_queue(SCORER_SIGNALS.dlq)

        async def find():
            found, taken = None, []
            while (message := await dlq.get(no_ack=False, fail=False)) is not None:
                taken.append(message)
            for message in taken:
                if message.message_id == str(event_id):
                    found = message
                    await message.ack()
                else:
                    await message.nack(requeue=True)
            return found

        return await eventually(find)
    finally:
        await connection.close()


class TestBadEvents:
    async def test_signals_for_an_unknown_lead_are_dead_lettered(
        self, scorer, publisher, settings, make_tenant
    ):
        tenant = await make_tenant()
        event = signals(tenant.id, uuid.uuid4(), S.INTERESTED)
        await publisher.publish(event)
        message = await dead_lettered(settings, event.event_id)
        assert message.headers["x-error-type"] == "PermanentError"

    async def test_a_lead_of_another_tenant_is_unknown(
        self, scorer, publisher, settings, app_pool, make_tenant
    ):
        mine, theirs = await make_tenant(), await make_tenant()
        their_lead = await create_lead(app_pool, theirs.id)
        event = signals(mine.id, their_lead, S.INTERESTED)
        await publisher.publish(event)
        await dead_lettered(settings, event.event_id)
        assert (await lead_row(app_pool, theirs.id, their_lead))["score"] == 0

    async def test_invalid_tenant_settings_dead_letter_with_the_reason(
        self, scorer, publisher, settings, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        await set_scoring(settings, tenant.id, {"bands": {"hot": 30, "warm": 60}})
        lead = await create_lead(app_pool, tenant.id)
        event = signals(tenant.id, lead, S.INTERESTED)
        await publisher.publish(event)
        message = await dead_lettered(settings, event.event_id)
        assert "invalid scoring settings" in message.headers["x-error"]
        assert await history(app_pool, tenant.id, lead) == []
