"""`tistis tenant|connection|ai-context|catalog|api-key` against the session's database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from tistis_common.admin import hash_api_key
from tistis_common.db import conn_tenant_tx, connect
from tistis_common.secrets import DEV_KEY, SecretBox


async def owner_fetch(settings, tenant_id, sql, *args):
    conn = await connect(settings.migration_database_url)
    try:
        async with conn_tenant_tx(conn, tenant_id):
            return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def slug() -> str:
    return f"clinic-{uuid.uuid4().hex[:10]}"


class TestTenantCreate:
    async def test_creates_a_tenant(self, tistis, settings):
        s = slug()
        result = await tistis("tenant", "create", s, "--name", "Clínica Sonrisa",
                              "--timezone", "America/Monterrey")
        assert result.exit_code == 0, result.output
        conn = await connect(settings.migration_database_url)
        row = await conn.fetchrow("SELECT name, timezone FROM tenants WHERE slug = $1", s)
        await conn.close()
        assert dict(row) == {"name": "Clínica Sonrisa", "timezone": "America/Monterrey"}

    @pytest.mark.parametrize("args,reason", [
        (["Bad_Slug", "--name", "x"], "bad tenant slug"),
        (["ok-slug", "--name", "x", "--timezone", "Mars/Olympus"], "unknown timezone"),
    ])
    async def test_wrong_argument_is_one_line_and_non_zero(self, tistis, args, reason):
        result = await tistis("tenant", "create", *args)
        assert result.exit_code == 2
        assert result.output.strip().count("\n") == 0
        assert reason in result.output

    async def test_existing_slug_is_refused(self, tistis, make_tenant):
        tenant = await make_tenant()
        result = await tistis("tenant", "create", tenant.slug, "--name", "again")
        assert result.exit_code == 2
        assert "already exists" in result.output


class TestConnections:
    async def test_add_then_show_masks_every_secret(self, tistis, make_tenant):
        tenant = await make_tenant()
        secret_token = "EAAG" + "x" * 40 + "zz"
        result = await tistis("connection", "add", tenant.slug, "whatsapp", "109999999999999",
                              "--access-token", secret_token, "--verify-token", "verify-me-please",
                              "--app-secret", "s3cr3t-app-secret-value")
        assert result.exit_code == 0, result.output
        shown = await tistis("connection", "show", tenant.slug, "--channel", "whatsapp")
        assert shown.exit_code == 0
        assert "109999999999999" in shown.output
        for secret in (secret_token, "verify-me-please", "s3cr3t-app-secret-value"):
            assert secret not in shown.output
        assert "EAAG…zz (46 chars)" in shown.output

    async def test_an_account_of_another_tenant_is_refused(self, tistis, make_tenant, settings):
        a, b = await make_tenant(), await make_tenant()
        result = await tistis("connection", "add", a.slug, "whatsapp", b.whatsapp_phone_number_id,
                              "--access-token", "stolen")
        assert result.exit_code != 0
        assert result.output.strip().count("\n") == 0
        [row] = await owner_fetch(settings, b.id, "SELECT tenant_id, access_token FROM channel_connections "
                                  "WHERE channel = 'whatsapp'")
        assert row["tenant_id"] == b.id and row["access_token"] != "stolen"

    async def test_rotate_replaces_the_token_and_clears_the_error(self, tistis, make_tenant, settings):
        tenant = await make_tenant()
        await owner_fetch(settings, tenant.id, "UPDATE channel_connections SET healthy = false, "
                          "last_error = 'expired' WHERE channel = 'tiktok' RETURNING 1")
        result = await tistis("connection", "rotate", tenant.slug, "tiktok",
                              "--access-token", "new-token-123")
        assert result.exit_code == 0, result.output
        [row] = await owner_fetch(settings, tenant.id, "SELECT access_token, healthy, last_error "
                                  "FROM channel_connections WHERE channel = 'tiktok'")
        opened = {**dict(row), "access_token": SecretBox(DEV_KEY).open(row["access_token"])}
        assert opened == {"access_token": "new-token-123", "healthy": True, "last_error": None}

    async def test_rotate_without_a_secret_or_connection_fails(self, tistis, make_tenant):
        tenant = await make_tenant()
        result = await tistis("connection", "rotate", tenant.slug, "tiktok")
        assert (result.exit_code, "nothing to rotate" in result.output) == (2, True)
        result = await tistis("connection", "rotate", tenant.slug, "tiktok", "--account", "nope",
                              "--access-token", "t")
        assert result.exit_code == 2
        assert "no tiktok connection nope" in result.output

    async def test_check_reports_each_token_and_records_a_refusal(self, tistis, make_tenant, settings):
        tenant = await make_tenant()
        good = await tistis("connection", "check", tenant.slug)
        assert good.exit_code == 0, good.output
        assert [line.split()[0] for line in good.output.splitlines()] == ["ok"] * 4
        await tistis("connection", "rotate", tenant.slug, "instagram", "--access-token", "revoked-ig")
        await tistis("connection", "rotate", tenant.slug, "tiktok", "--access-token", "revoked-tt")
        bad = await tistis("connection", "check", tenant.slug)
        assert bad.exit_code == 1
        lines = {line.split()[1]: line.split()[0] for line in bad.output.splitlines()}
        assert lines == {"whatsapp": "ok", "instagram": "bad", "facebook": "ok", "tiktok": "bad"}
        rows = await owner_fetch(settings, tenant.id, "SELECT channel, healthy, last_error FROM "
                                 "channel_connections ORDER BY channel")
        state = {r["channel"]: (r["healthy"], r["last_error"] is not None) for r in rows}
        assert state == {"facebook": (True, False), "instagram": (False, True),
                         "tiktok": (False, True), "whatsapp": (True, False)}
        # fixed: a rotation makes the doctor happy again for the other tests of the session
        for channel in ("instagram", "tiktok"):
            await tistis("connection", "rotate", tenant.slug, channel, "--access-token", "token-ok")

    async def test_unknown_tenant_and_channel_are_refused(self, tistis):
        result = await tistis("connection", "show", "no-such-clinic")
        assert (result.exit_code, result.output.strip()) == (2, "error: no tenant with slug 'no-such-clinic'")


class TestAiContextAndCatalog:
    async def test_ai_context_set(self, tistis, make_tenant, settings):
        tenant = await make_tenant()
        result = await tistis("ai-context", "set", tenant.slug, "--ai-provider", "n8n", "--temperature",
                              "0.3", "--escalation-keyword", "dolor", "--escalation-keyword", "queja")
        assert result.exit_code == 0, result.output
        [row] = await owner_fetch(settings, tenant.id, "SELECT ai_provider, temperature, escalation_keywords "
                                  "FROM ai_tenant_context")
        assert (row["ai_provider"], round(row["temperature"], 2), row["escalation_keywords"]) == (
            "n8n", 0.3, ["dolor", "queja"])

    @pytest.mark.parametrize("args", [["--temperature", "1.5"], ["--ai-provider", "gpt"], []])
    async def test_ai_context_wrong_values_are_refused(self, tistis, make_tenant, args):
        tenant = await make_tenant()
        result = await tistis("ai-context", "set", tenant.slug, *args)
        assert result.exit_code == 2

    async def test_catalog_import_from_yaml(self, tistis, make_tenant, settings, tmp_path):
        tenant = await make_tenant()
        path = tmp_path / "catalog.yaml"
        path.write_text(
            "branches:\n  - {name: Norte, address: Av. Norte 5, capacity: 2}\n"
            "services:\n  - {name: Implantes, price_min: 15000, high_value: true, keywords: [implante]}\n"
            "faqs:\n  - {question: \"¿Aceptan tarjeta?\", answer: \"Sí, todas.\"}\n", encoding="utf-8")
        result = await tistis("catalog", "import", tenant.slug, str(path))
        assert result.exit_code == 0, result.output
        assert "1 branches, 1 services, 1 faqs" in result.output
        names = await owner_fetch(settings, tenant.id, "SELECT name FROM services ORDER BY name")
        assert [r["name"] for r in names] == ["Implantes", "Limpieza dental"]

    async def test_catalog_import_refuses_a_bad_file(self, tistis, make_tenant, tmp_path):
        tenant = await make_tenant()
        path = tmp_path / "bad.yaml"
        path.write_text("services:\n  - {price_min: 3}\n", encoding="utf-8")
        result = await tistis("catalog", "import", tenant.slug, str(path))
        assert result.exit_code == 2
        assert "services[0] lacks name" in result.output


class TestApiKeys:
    async def test_issue_shows_the_key_once_and_stores_only_its_hash(self, tistis, make_tenant, settings,
                                                                    app_pool):
        tenant = await make_tenant()
        result = await tistis("api-key", "issue", tenant.slug, "--name", "dashboard")
        assert result.exit_code == 0, result.output
        key = next(line.split()[1] for line in result.output.splitlines() if line.startswith("key:"))
        key_id = next(line.split()[1] for line in result.output.splitlines() if line.startswith("id:"))
        rows = await owner_fetch(settings, tenant.id, "SELECT key_hash, prefix FROM api_keys")
        assert [r["key_hash"] for r in rows] == [hash_api_key(key)]
        assert key not in str([dict(r) for r in rows])
        assert await app_pool.fetchval("SELECT api_key_tenant($1)", hash_api_key(key)) == tenant.id
        listed = await tistis("api-key", "list", tenant.slug)
        assert key not in listed.output and "dashboard" in listed.output and "live" in listed.output

        revoked = await tistis("api-key", "revoke", tenant.slug, key_id)
        assert revoked.exit_code == 0, revoked.output
        assert await app_pool.fetchval("SELECT api_key_tenant($1)", hash_api_key(key)) is None
        again = await tistis("api-key", "revoke", tenant.slug, key_id)
        assert again.exit_code == 2
        bad = await tistis("api-key", "revoke", tenant.slug, "not-a-uuid")
        assert (bad.exit_code, "bad key id" in bad.output) == (2, True)

    async def test_a_key_of_another_tenant_cannot_be_revoked(self, tistis, make_tenant):
        a, b = await make_tenant(), await make_tenant()
        result = await tistis("api-key", "issue", a.slug, "--name", "x")
        key_id = next(line.split()[1] for line in result.output.splitlines() if line.startswith("id:"))
        assert (await tistis("api-key", "revoke", b.slug, key_id)).exit_code == 2
        assert (await tistis("api-key", "revoke", a.slug, key_id)).exit_code == 0


    async def test_a_key_issued_with_an_expiry_is_refused_after_it(self, tistis, make_tenant,
                                                                   settings, app_pool):
        tenant = await make_tenant()
        result = await tistis("api-key", "issue", tenant.slug, "--name", "n8n",
                              "--expires-in-days", "0")
        assert result.exit_code == 0, result.output
        key = next(line.split()[1] for line in result.output.splitlines() if line.startswith("key:"))
        assert await app_pool.fetchval("SELECT api_key_tenant($1)", hash_api_key(key)) is None
        assert "expires" in (await tistis("api-key", "list", tenant.slug)).output
        later = await tistis("api-key", "issue", tenant.slug, "--name", "n8n", "--expires-in-days", "1")
        key = next(line.split()[1] for line in later.output.splitlines() if line.startswith("key:"))
        assert await app_pool.fetchval("SELECT api_key_tenant($1)", hash_api_key(key)) == tenant.id

class TestEntryPoint:
    def test_usage_error_through_the_real_command_is_one_line(self):
        env = {**os.environ}
        result = subprocess.run([sys.executable, "-m", "tistis_cli.main", "connection", "add", "x", "bogus",
                                 "1", "--access-token", "t"], capture_output=True, text=True, env=env,
                                check=False)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert result.stderr.startswith("error: Invalid value for 'channel'")


class TestExistingCommands:
    async def test_migrate_on_a_current_schema_changes_nothing(self, tistis):
        result = await tistis("migrate")
        assert (result.exit_code, result.output.strip()) == (0, "schema up to date")

    async def test_seed_demo_twice_is_one_tenant(self, tistis, settings):
        for _ in range(2):
            result = await tistis("seed-demo")
            assert result.exit_code == 0, result.output
        conn = await connect(settings.migration_database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM tenants WHERE slug = 'esva-dental'") == 1
        finally:
            await conn.close()
