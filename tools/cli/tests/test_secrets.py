"""Secrets at rest: stored encrypted, masked when shown, and `tistis secrets rotate` moves every
stored secret to a new key (MultiFernet: https://cryptography.io/en/latest/fernet/#cryptography.fernet.MultiFernet)."""

from __future__ import annotations

from tistis_common.secrets import DEV_KEY, PREFIX, SecretBox, generate_key

from .test_tenant_admin import owner_fetch

SQL = "SELECT access_token, verify_token, app_secret FROM channel_connections WHERE channel = $1"


class TestSecretsAtRest:
    async def test_a_connection_is_stored_encrypted_and_shown_masked(self, tistis, make_tenant,
                                                                     settings):
        tenant = await make_tenant()
        result = await tistis("connection", "add", tenant.slug, "whatsapp", "108888888888888",
                              "--access-token", "EAAG-plain-token-0123456789",
                              "--verify-token", "verify-plain-1", "--app-secret", "app-secret-plain")
        assert result.exit_code == 0, result.output
        [row] = await owner_fetch(settings, tenant.id, SQL + " AND platform_account_id = $2",
                                  "whatsapp", "108888888888888")
        assert all(value.startswith(PREFIX) for value in row.values())
        box = SecretBox(DEV_KEY)
        assert [box.open(v) for v in row.values()] == [
            "EAAG-plain-token-0123456789", "verify-plain-1", "app-secret-plain"]
        shown = await tistis("connection", "show", tenant.slug, "--channel", "whatsapp")
        assert "EAAG-plain-token-0123456789" not in shown.output
        assert "EAAG…89 (27 chars)" in shown.output

    async def test_rotate_moves_every_secret_to_the_new_key_and_encrypts_old_plain_ones(
        self, tistis, make_tenant, settings
    ):
        tenant = await make_tenant()
        # A row written before encryption existed.
        await owner_fetch(settings, tenant.id, "UPDATE channel_connections SET access_token = "
                          "'legacy-plain-token', refresh_token = 'legacy-plain-refresh' "
                          "WHERE channel = 'tiktok' RETURNING 1")
        new = generate_key()
        try:
            rotated = await tistis("secrets", "rotate", SECRETS_KEYS=f"{new},{DEV_KEY}")
            assert rotated.exit_code == 0, rotated.output
            [row] = await owner_fetch(settings, tenant.id, SQL, "tiktok")
            assert row["access_token"].startswith(PREFIX)
            assert SecretBox(new).open(row["access_token"]) == "legacy-plain-token"
            [refresh] = await owner_fetch(settings, tenant.id, "SELECT refresh_token FROM "
                                          "channel_connections WHERE channel = $1", "tiktok")
            assert SecretBox(new).open(refresh["refresh_token"]) == "legacy-plain-refresh"
            # the old key alone opens nothing any more: one line, non-zero
            old_only = await tistis("connection", "check", tenant.slug)
            assert old_only.exit_code == 2
            assert old_only.output.strip() == "error: no key in SECRETS_KEYS opens a stored secret"
            shown = await tistis("connection", "show", tenant.slug, SECRETS_KEYS=new)
            assert shown.exit_code == 0 and "legacy-plain-token" not in shown.output
        finally:  # back to the session's key, for the other tests sharing the database
            back = await tistis("secrets", "rotate", SECRETS_KEYS=f"{DEV_KEY},{new}")
            assert back.exit_code == 0, back.output

    async def test_new_key_prints_a_usable_key(self, tistis):
        result = await tistis("secrets", "new-key")
        key = result.output.strip()
        assert SecretBox(key).open(SecretBox(key).seal("x")) == "x"
