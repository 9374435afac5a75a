"""Who is who: tenants by slug and their channel connections, cached briefly so that a burst of
webhooks does not cost two queries each."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg
from tistis_common.db import tenant_by_slug, tenant_tx
from tistis_common.secrets import SecretBox


@dataclass(frozen=True)
class Connection:
    platform_account_id: str
    verify_token: str | None
    app_secret: str | None
    app_id: str | None


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    slug: str


class Directory:
    def __init__(self, pool: asyncpg.Pool, secrets: SecretBox, ttl_seconds: float = 10.0):
        self.pool = pool
        self.secrets = secrets
        self.ttl = ttl_seconds
        self._tenants: dict[str, tuple[float, Tenant | None]] = {}
        self._connections: dict[tuple[uuid.UUID, str], tuple[float, list[Connection]]] = {}

    async def tenant(self, slug: str) -> Tenant | None:
        hit = self._tenants.get(slug)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        row = await tenant_by_slug(self.pool, slug)
        tenant = Tenant(row["id"], row["slug"]) if row else None
        self._tenants[slug] = (time.monotonic() + self.ttl, tenant)
        return tenant

    async def connections(self, tenant_id: uuid.UUID, channel: str) -> list[Connection]:
        key = (tenant_id, channel)
        hit = self._connections.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        async with tenant_tx(self.pool, tenant_id) as conn:
            rows = await conn.fetch(
                """SELECT platform_account_id, verify_token, app_secret, app_id
                   FROM channel_connections WHERE channel = $1 AND enabled""",
                channel,
            )
        found = [
            Connection(r["platform_account_id"], self.secrets.open(r["verify_token"]),
                       self.secrets.open(r["app_secret"]), r["app_id"])
            for r in rows
        ]
        self._connections[key] = (time.monotonic() + self.ttl, found)
        return found
