"""Where patient files (photos, voice notes, documents) are kept, and the links staff open them by.

A store holds bytes under a key and nothing else: `put`, `get`, `delete`. Keys are partitioned by
tenant and content-addressed (`t/<tenant_id>/<sha256>`): the same file sent twice is kept once,
and a key says nothing that is not already in the file. Keys never leave the back end: staff
reach a file only through the operator API, by a link signed here (HMAC-SHA256 over the tenant,
the file and an expiry), which stops working after a few minutes.

- `FileStore`: a directory (the default; `make run` and the tests), written atomically.
- `S3Store`: any S3-compatible object store through aiobotocore (tested against moto's server
  mode, a stand-in: no S3 server is installed here).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

from tistis_common.settings import Settings


class FileMissing(Exception):
    """No file under this key (deleted by retention or erasure, or never stored)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_key(tenant_id: uuid.UUID | str, sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError("not a sha256 hex digest")
    return f"t/{uuid.UUID(str(tenant_id))}/{sha256}"


class MediaStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    async def close(self) -> None: ...


class FileStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("key outside the store")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers see the whole file or none

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError as exc:
            raise FileMissing(key) from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def close(self) -> None:
        return None


class S3Store:
    """One aiobotocore client for the process (`open`), closed with it."""

    def __init__(self, bucket: str, client: Any, stack: AsyncExitStack):
        self.bucket = bucket
        self._client = client
        self._stack = stack

    @classmethod
    async def open(cls, settings: Settings) -> S3Store:
        from aiobotocore.session import get_session  # only S3 deployments import botocore

        stack = AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=settings.media_s3_endpoint_url,
            region_name=settings.media_s3_region,
            aws_access_key_id=settings.media_s3_access_key_id,
            aws_secret_access_key=settings.media_s3_secret_access_key,
        ))
        return cls(settings.media_s3_bucket, client, stack)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                      ContentType=content_type)

    async def get(self, key: str) -> bytes:
        try:
            answer = await self._client.get_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.NoSuchKey as exc:
            raise FileMissing(key) from exc
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def close(self) -> None:
        await self._stack.aclose()


async def open_store(settings: Settings) -> MediaStore:
    if settings.media_store == "s3":
        return await S3Store.open(settings)
    if settings.media_store != "fs":
        raise ValueError(f"MEDIA_STORE must be fs or s3, not {settings.media_store!r}")
    return FileStore(settings.media_dir)


# ------------------------------------------------------------------ signed links


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_link(secret: str, tenant_id: uuid.UUID, file_id: uuid.UUID, ttl_seconds: int,
              now: float | None = None) -> tuple[str, int]:
    """A token naming one file of one tenant until `expires` (unix seconds)."""
    expires = int((now if now is not None else time.time()) + ttl_seconds)
    body = f"{tenant_id}.{file_id}.{expires}"
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{_b64(body.encode())}.{_b64(mac)}", expires


def verify_link(secret: str, token: str, now: float | None = None) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(tenant_id, file_id) of a valid, unexpired token; None for anything else."""
    try:
        body_part, mac_part = token.split(".")
        body = base64.urlsafe_b64decode(body_part + "=" * (-len(body_part) % 4)).decode()
        mac = base64.urlsafe_b64decode(mac_part + "=" * (-len(mac_part) % 4))
        expected = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None
        tenant, file_id, expires = body.split(".")
        if int(expires) < (now if now is not None else time.time()):
            return None
        return uuid.UUID(tenant), uuid.UUID(file_id)
    except (ValueError, UnicodeDecodeError):
        return None
