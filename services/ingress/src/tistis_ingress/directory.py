"""Who is who: tenants by slug and their channel connections, cached briefly so that a burst of
webhooks does not cost two queries each."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg
from tistis_common.db import tenant_by_slug, tenant_tx


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
    def __init__(self, pool: asyncpg.Pool, ttl_seconds: float = 10.0):
        self.pool = pool
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
        found = [Connection(**dict(r)) for r in rows]
        self._connections[key] = (time.monotonic() + self.ttl, found)
        return found

    async def set_template_statuses(self, tenant_id: uuid.UUID,
                                    statuses: list[tuple[str, str]]) -> None:
        """A template the tenant does not have is left alone (RLS keeps it to the tenant)."""
        async with tenant_tx(self.pool, tenant_id) as conn:
            for template_id, status in statuses:
                await conn.execute(
                    """UPDATE whatsapp_templates SET status = $2, updated_at = now()
                       WHERE template_id = $1""", template_id, status)
