import asyncpg
import pytest
from tistis_common.db import create_pool, tenant_session, tenant_tx
from tistis_common.migrate import available, migrate


class TestMigrations:
    async def test_applying_twice_changes_nothing(self, settings):
        assert await migrate(settings.migration_database_url) == []

    def test_migrations_are_numbered_uniquely(self):
        versions = [m.version for m in available()]
        assert versions == sorted(set(versions))


class TestTenantIsolation:
    async def test_a_tenant_sees_only_its_own_rows(self, app_pool, make_tenant):
        a, b = await make_tenant(), await make_tenant()
        async with tenant_tx(app_pool, a.id) as conn:
            rows = await conn.fetch("SELECT tenant_id FROM channel_connections")
            assert {r["tenant_id"] for r in rows} == {a.id}
            assert await conn.fetchval("SELECT count(*) FROM faqs") == 1
        async with tenant_tx(app_pool, b.id) as conn:
            rows = await conn.fetch("SELECT platform_account_id FROM channel_connections")
            assert a.whatsapp_phone_number_id not in {r["platform_account_id"] for r in rows}

    async def test_no_scope_sees_nothing(self, app_pool, make_tenant):
        await make_tenant()
        assert await app_pool.fetchval("SELECT count(*) FROM channel_connections") == 0

    async def test_writing_into_another_tenant_is_refused(self, app_pool, make_tenant):
        a, b = await make_tenant(), await make_tenant()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_tx(app_pool, a.id) as conn:
                await conn.execute(
                    "INSERT INTO faqs (tenant_id, question, answer) VALUES ($1, 'q', 'a')", b.id
                )

    async def test_a_session_scope_ends_when_the_connection_goes_back(self, make_tenant, settings):
        a = await make_tenant()
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            async with tenant_session(pool, a.id) as conn:
                assert await conn.fetchval("SELECT count(*) FROM faqs") == 1
                backend = conn.get_server_pid()
            async with pool.acquire() as conn:  # the same (only) connection, reset by the pool
                assert conn.get_server_pid() == backend
                assert await conn.fetchval("SELECT count(*) FROM faqs") == 0
        finally:
            await pool.close()

    async def test_our_pool_clears_a_stale_scope_before_any_unscoped_use(self, make_tenant,
                                                                       settings):
        """`create_pool` keeps a session scope on release (no reset round trip) and clears it
        when the next acquirer does not scope: a stale tenant never leaks."""
        a, b = await make_tenant(), await make_tenant()
        pool = await create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            async with tenant_session(pool, a.id) as conn:
                assert await conn.fetchval("SELECT count(*) FROM faqs") == 1
            assert await pool.fetchval("SELECT count(*) FROM faqs") == 0  # same connection
            async with tenant_session(pool, a.id):
                pass
            async with tenant_tx(pool, b.id) as conn:  # overwrites it for the transaction
                assert {r["tenant_id"] for r in await conn.fetch(
                    "SELECT tenant_id FROM faqs")} == {b.id}
            async with pool.acquire() as conn:  # after the transaction: cleared, not a's
                assert await conn.fetchval("SELECT count(*) FROM faqs") == 0
        finally:
            await pool.close()
