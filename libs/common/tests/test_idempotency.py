"""tistis_common.idempotency against the real schema: processed marks, the kept events a
redelivery re-emits, and the unpublished events of a pass; plus migration 1500, which renamed
the scheduler's outbox and named the consumer of the rows kept before it."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from tistis_common import db, idempotency
from tistis_common.db import tenant_tx
from tistis_common.events import LeadClassified
from tistis_common.migrate import available
from tistis_common.testing.plugin import _with_db

T0 = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)


def _classified(tenant_id: uuid.UUID, score: int, event_id: uuid.UUID | None = None) -> LeadClassified:
    return LeadClassified(event_id=event_id or uuid.uuid4(), tenant_id=tenant_id, occurred_at=T0,
                          lead_id=uuid.uuid4(), score=score, classification="warm")


class TestFirstDelivery:
    async def test_only_the_first_delivery_of_an_event_to_a_consumer_is_first(self, app_pool,
                                                                              make_tenant):
        tenant = await make_tenant()
        event = _classified(tenant.id, 40)
        async with tenant_tx(app_pool, tenant.id) as conn:
            assert await idempotency.first_delivery(conn, "test-a", event)
            assert not await idempotency.first_delivery(conn, "test-a", event)
            assert await idempotency.first_delivery(conn, "test-b", event)  # its own mark

    async def test_a_rolled_back_delivery_leaves_no_mark(self, app_pool, make_tenant):
        tenant = await make_tenant()
        event = _classified(tenant.id, 40)
        try:
            async with tenant_tx(app_pool, tenant.id) as conn:
                assert await idempotency.first_delivery(conn, "test-a", event)
                raise RuntimeError("the handler failed")
        except RuntimeError:
            pass
        async with tenant_tx(app_pool, tenant.id) as conn:
            assert await idempotency.first_delivery(conn, "test-a", event)


class TestKept:
    async def test_a_redelivery_gets_the_same_events_in_the_same_order(self, app_pool, make_tenant):
        tenant = await make_tenant()
        source = uuid.uuid4()
        # ids in descending order: the order kept is the order decided, not the ids'
        events = [_classified(tenant.id, n, uuid.UUID(int=100 - n)) for n in (1, 2, 3)]
        async with tenant_tx(app_pool, tenant.id) as conn:
            await idempotency.keep(conn, "test-a", source, events, now=T0)
            await idempotency.keep(conn, "test-a", source, events[:1], now=T0)  # kept once
        async with tenant_tx(app_pool, tenant.id) as conn:
            assert await idempotency.kept(conn, "test-a", source) == events
            assert await idempotency.kept(conn, "test-b", source) == []
            assert await idempotency.kept(conn, "test-a", uuid.uuid4()) == []
            # a consumer's kept events are published by the runner: nothing left for a pass
            assert await idempotency.unpublished(conn, "test-a", T0 + timedelta(days=1)) == []

    async def test_another_tenant_does_not_see_them(self, app_pool, make_tenant):
        a, b = await make_tenant(), await make_tenant()
        source = uuid.uuid4()
        async with tenant_tx(app_pool, a.id) as conn:
            await idempotency.keep(conn, "test-a", source, [_classified(a.id, 1)], now=T0)
        async with tenant_tx(app_pool, b.id) as conn:
            assert await idempotency.kept(conn, "test-a", source) == []


class TestUnpublished:
    async def test_a_pass_finds_what_it_kept_and_did_not_publish_after_the_grace(self, app_pool,
                                                                                make_tenant):
        tenant = await make_tenant()
        old, new = _classified(tenant.id, 1), _classified(tenant.id, 2)
        async with tenant_tx(app_pool, tenant.id) as conn:
            await idempotency.keep(conn, "test-pass", None, [old], now=T0, published=False)
            await idempotency.keep(conn, "test-pass", None, [new], now=T0 + timedelta(minutes=5),
                                   published=False)
        async with tenant_tx(app_pool, tenant.id) as conn:
            assert await idempotency.unpublished(conn, "test-other", T0 + timedelta(minutes=1)) == []
            stale = await idempotency.unpublished(conn, "test-pass", T0 + timedelta(minutes=1))
            assert stale == [old]
            await idempotency.mark_published(conn, stale, T0 + timedelta(minutes=1))
        async with tenant_tx(app_pool, tenant.id) as conn:
            assert await idempotency.unpublished(conn, "test-pass", T0 + timedelta(hours=1)) == [new]


class TestMigration1500:
    async def test_rows_kept_before_it_name_their_consumer(self, infra, make_tenant):
        """A database migrated up to 1499 with scheduler outbox rows (one per queue, one of a
        pass) keeps them, each under its consumer, after 1500."""
        name = f"tistis_test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(infra.owner_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        conn = await asyncpg.connect(_with_db(infra.owner_url, name))
        try:
            for m in available():
                if m.version < 1500:
                    await conn.execute(m.sql)
            tenant = await conn.fetchval(
                "INSERT INTO tenants (slug, name) VALUES ('m1500', 'M') RETURNING id")
            await db.scope(conn, tenant, session=True)
            requests, choices = uuid.uuid4(), uuid.uuid4()
            await conn.executemany(
                "INSERT INTO processed_events (consumer, event_id, tenant_id) VALUES ($1, $2, $3)",
                [("scheduler.requests", requests, tenant), ("scheduler.choices", choices, tenant),
                 ("ai-responder", requests, tenant)])
            await conn.executemany(
                """INSERT INTO scheduler_outbox (event_id, tenant_id, source_event_id, body, created_at,
                                                 published_at) VALUES ($1, $2, $3, '{}', now(), $4)""",
                [(uuid.uuid4(), tenant, requests, T0), (uuid.uuid4(), tenant, choices, T0),
                 (uuid.uuid4(), tenant, None, None)])
            await db.scope(conn, None, session=True)  # as a migration runs
            await conn.execute(next(m.sql for m in available() if m.version == 1500))
            await db.scope(conn, tenant, session=True)
            rows = await conn.fetch("SELECT consumer, source_event_id FROM event_outbox")
            assert {(r["consumer"], r["source_event_id"]) for r in rows} == {
                ("scheduler.requests", requests), ("scheduler.choices", choices), ("scheduler", None)}
            forced = await conn.fetchval(
                """SELECT bool_and(relforcerowsecurity) FROM pg_class
                   WHERE relname IN ('event_outbox', 'processed_events')""")
            assert forced
        finally:
            await conn.close()
            admin = await asyncpg.connect(infra.owner_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
