"""The media store (a directory, and an S3-compatible bucket) and the signed links staff open
files by. The S3 store runs against moto's server mode: a stand-in that speaks the S3 wire
protocol on a loopback port (no S3 server is installed here), through the same aiobotocore
client a cluster uses with a real bucket."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from tistis_common.db import connect, tenant_tx
from tistis_common.media_files import keep_file
from tistis_common.retention import expire_media
from tistis_common.storage import (
    FileMissing,
    FileStore,
    S3Store,
    media_key,
    sha256_hex,
    sign_link,
    verify_link,
)

SECRET = "test-media-secret"


class TestMediaKey:
    def test_a_key_is_the_tenant_and_the_content_address(self):
        tenant = uuid.uuid4()
        sha = sha256_hex(b"x")
        assert media_key(tenant, sha) == f"t/{tenant}/{sha}"

    def test_a_key_never_takes_a_path(self):
        with pytest.raises(ValueError):
            media_key(uuid.uuid4(), "../../etc/passwd")


class TestSignedLinks:
    def test_a_link_names_its_tenant_and_file_until_it_expires(self):
        tenant, file_id = uuid.uuid4(), uuid.uuid4()
        token, expires = sign_link(SECRET, tenant, file_id, 300, now=1000.0)
        assert expires == 1300
        assert verify_link(SECRET, token, now=1299.0) == (tenant, file_id)
        assert verify_link(SECRET, token, now=1301.0) is None

    def test_a_tampered_or_foreign_link_opens_nothing(self):
        token, _ = sign_link(SECRET, uuid.uuid4(), uuid.uuid4(), 300)
        _, mac = token.split(".")
        other, _ = sign_link(SECRET, uuid.uuid4(), uuid.uuid4(), 300)
        assert verify_link("another-secret", token) is None
        assert verify_link(SECRET, f"{other.split('.')[0]}.{mac}") is None
        assert verify_link(SECRET, "not-a-token") is None
        assert verify_link(SECRET, "") is None


async def roundtrip(store) -> None:
    key = media_key(uuid.uuid4(), sha256_hex(b"png bytes"))
    await store.put(key, b"png bytes", "image/png")
    await store.put(key, b"png bytes", "image/png")  # the same content again: one object
    assert await store.get(key) == b"png bytes"
    await store.delete(key)
    with pytest.raises(FileMissing):
        await store.get(key)
    await store.delete(key)  # deleting twice is fine (retention and erasure may overlap)


class TestFileStore:
    async def test_put_get_delete(self, tmp_path):
        await roundtrip(FileStore(tmp_path))

    async def test_no_key_escapes_the_directory(self, tmp_path):
        with pytest.raises(ValueError):
            await FileStore(tmp_path / "store").put("../outside", b"x", "text/plain")


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class TestS3Store:
    async def test_put_get_delete_against_an_s3_server(self, settings, moto_url):
        s = settings.model_copy(update={
            "media_store": "s3", "media_s3_endpoint_url": moto_url,
            "media_s3_bucket": f"media-{uuid.uuid4().hex[:8]}",
            "media_s3_access_key_id": "testing", "media_s3_secret_access_key": "testing"})
        store = await S3Store.open(s)
        try:
            await store._client.create_bucket(Bucket=s.media_s3_bucket)
            await roundtrip(store)
        finally:
            await store.close()


class TestRetention:
    """Files older than the tenant's retention go (row and bytes); younger ones and other
    tenants' stay. (Erasure: tools/cli/tests/test_erase_patient.py, through the command.)"""

    async def put(self, app_pool, store, tenant_id, data: bytes, age_days: int) -> str:
        sha = sha256_hex(data)
        key = media_key(tenant_id, sha)
        await store.put(key, data, "image/png")
        async with tenant_tx(app_pool, tenant_id) as conn:
            await keep_file(conn, tenant_id, sha, key, "image/png", len(data), None)
            await conn.execute("UPDATE media_files SET last_used_at = now() - $2::interval "
                               "WHERE sha256 = $1", sha, timedelta(days=age_days))
        return key

    async def test_files_past_the_tenants_retention_are_deleted(self, settings, app_pool,
                                                               make_tenant, tmp_path):
        store = FileStore(tmp_path)
        short, default = await make_tenant(), await make_tenant()
        owner = await connect(settings.migration_database_url)
        try:
            await owner.execute("""UPDATE tenants SET settings = '{"media_retention_days": 30}'
                                   WHERE id = $1""", short.id)
        finally:
            await owner.close()
        old = await self.put(app_pool, store, short.id, b"old photo", 40)
        young = await self.put(app_pool, store, short.id, b"young photo", 10)
        kept = await self.put(app_pool, store, default.id, b"old but kept", 40)
        now = datetime.now(UTC)
        assert await expire_media(app_pool, store, short.id, now, default_days=365) == 1
        assert await expire_media(app_pool, store, default.id, now, default_days=365) == 0
        with pytest.raises(FileMissing):
            await store.get(old)
        assert await store.get(young) == b"young photo"
        assert await store.get(kept) == b"old but kept"
        async with tenant_tx(app_pool, short.id) as conn:
            assert await conn.fetchval("SELECT count(*) FROM media_files") == 1
