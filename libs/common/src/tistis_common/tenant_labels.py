"""The `tenant` label of every metric is the tenant's slug (what operators know and dashboards
filter on), never its UUID. A consumer looks the slug up once per tenant at the start of a
handler, or where it counts (`await TENANT_LABELS.load(pool_or_conn, tenant_id)`, after any
per-conversation lock, so that the lookup cannot reorder a burst); synchronous metrics code then
reads it from this process-wide cache (`of`). Slugs do not change, and the label set stays bounded
by the tenants that exist."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

UNKNOWN = "unknown"  # an event of a tenant that does not exist (it is refused, and counted)


class TenantLabels:
    def __init__(self) -> None:
        self._slugs: dict[uuid.UUID, str] = {}

    async def load(self, db: asyncpg.Pool | asyncpg.Connection, tenant_id: uuid.UUID) -> str:
        slug = self._slugs.get(tenant_id)
        if slug is None:
            # The tenant directory is readable without a tenant scope (tistis_common.db).
            found = await db.fetchval("SELECT slug FROM tenants WHERE id = $1", tenant_id)
            if found is None:
                return UNKNOWN
            slug = self._slugs[tenant_id] = found
        return slug

    def of(self, tenant_id: uuid.UUID) -> str:
        return self._slugs.get(tenant_id, UNKNOWN)


TENANT_LABELS = TenantLabels()
