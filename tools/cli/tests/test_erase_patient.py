"""`tistis erase-patient`: one patient's files (store and rows) and messages go, on request;
the other patients of the clinic keep theirs."""

from __future__ import annotations

from tistis_common.db import tenant_tx
from tistis_common.media_files import keep_file
from tistis_common.storage import FileStore, media_key, sha256_hex


async def patient_with_a_photo(app_pool, tenant, store, user: str) -> str:
    data = f"photo of {user}".encode()
    sha = sha256_hex(data)
    key = media_key(tenant.id, sha)
    await store.put(key, data, "image/png")
    async with tenant_tx(app_pool, tenant.id) as conn:
        lead = await conn.fetchval("INSERT INTO leads (tenant_id, channel, platform_user_id) "
                                   "VALUES ($1, 'whatsapp', $2) RETURNING id", tenant.id, user)
        conv = await conn.fetchval(
            "INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id) "
            "VALUES ($1, $2, 'whatsapp', 'x') RETURNING id", tenant.id, lead)
        await conn.execute(
            "INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction, "
            "sender_type, kind, platform_message_id) "
            "VALUES ($1, $2, $3, 'whatsapp', 'inbound', 'lead', 'image', $4)",
            tenant.id, conv, lead, f"wamid.{user}")
        file_id = await keep_file(conn, tenant.id, sha, key, "image/png", len(data), None)
        await conn.execute(
            "INSERT INTO media_fetches (tenant_id, channel, platform_message_id, "
            "platform_user_id, media_file_id, status) VALUES ($1, 'whatsapp', $2, $3, $4, 'stored')",
            tenant.id, f"wamid.{user}", user, file_id)
    return key


async def test_erase_patient_deletes_their_files_and_messages_only(tistis, make_tenant, app_pool,
                                                                   tmp_path):
    tenant = await make_tenant()
    store = FileStore(tmp_path)
    ana = await patient_with_a_photo(app_pool, tenant, store, "5215500000001")
    beto = await patient_with_a_photo(app_pool, tenant, store, "5215500000002")
    result = await tistis("erase-patient", "--tenant", tenant.slug, "--channel", "whatsapp",
                          "--user", "5215500000001", "--yes", MEDIA_DIR=str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "erased 1 file(s) and 1 message(s)" in result.output
    assert not (tmp_path / ana).exists() and (tmp_path / beto).exists()
    async with tenant_tx(app_pool, tenant.id) as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 1
        assert await conn.fetchval("SELECT count(*) FROM media_files") == 1
    again = await tistis("erase-patient", "--tenant", tenant.slug, "--channel", "whatsapp",
                         "--user", "5215500000001", "--yes", MEDIA_DIR=str(tmp_path))
    assert again.exit_code == 2 and "nothing stored" in again.output
