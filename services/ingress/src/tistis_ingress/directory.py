"""Who is who: tenants by slug, the tenant owning a platform account, and a tenant's channel
connections, cached briefly so that a burst of webhooks does not cost queries each (the
queries are in `repository.py`).

Every cache is bounded in size and time (cachetools' TTLCache evicts the least recently used
entry when full and expired ones on every write), and only what exists is cached: a flood of
unknown slugs or account ids costs a query each (after the format check, which refuses most
without one) but no memory. A slug or account id of the wrong shape is never looked up.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from cachetools import TTLCache
from tistis_common.db import SLUG

from . import repository
from .repository import Connection, Tenant

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.secrets import SecretBox

# Platform account ids are digits (Meta) or short opaque strings (TikTok open ids).
# A WhatsApp Business Account as a webhook item's account (whatsapp.py): `waba:<id>`.
BUSINESS_ACCOUNT = "waba:"
ACCOUNT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CACHE_SIZE = 10_000


def valid_slug(slug: str) -> bool:
    return SLUG.fullmatch(slug) is not None


def valid_account(account: str) -> bool:
    return ACCOUNT_ID.fullmatch(account) is not None


def _business_account(channel: str, account: str) -> str | None:
    if channel == "whatsapp" and account.startswith(BUSINESS_ACCOUNT):
        return account.removeprefix(BUSINESS_ACCOUNT)
    return None


class Directory:
    def __init__(self, pool: asyncpg.Pool, secrets: SecretBox, ttl_seconds: float = 10.0,
                 size: int = CACHE_SIZE):
        self.pool = pool
        self.secrets = secrets
        self._tenants: TTLCache[str, Tenant] = TTLCache(size, ttl_seconds)
        self._accounts: TTLCache[tuple[str, str], uuid.UUID] = TTLCache(size, ttl_seconds)
        self._connections: TTLCache[tuple[uuid.UUID, str], list[Connection]] = TTLCache(
            size, ttl_seconds)

    def cached(self) -> int:
        """Entries held, all caches together (the memory test reads it)."""
        return len(self._tenants) + len(self._accounts) + len(self._connections)

    async def tenant(self, slug: str) -> Tenant | None:
        if not valid_slug(slug):
            return None
        hit = self._tenants.get(slug)
        if hit is not None:
            return hit
        found = await repository.tenant(self.pool, slug)
        if found is not None:
            self._tenants[slug] = found
        return found

    async def account_tenant(self, channel: str, account: str) -> uuid.UUID | None:
        """The tenant whose enabled connection is this platform account, if any; for
        WhatsApp's `waba:<id>`, the one whose connection names that business account."""
        if not valid_account(account):
            return None
        key = (channel, account)
        hit = self._accounts.get(key)
        if hit is not None:
            return hit
        business_account = _business_account(channel, account)
        if business_account is not None:
            tenant_id = await repository.business_account_tenant(self.pool, business_account)
        else:
            tenant_id = await repository.account_tenant(self.pool, channel, account)
        if tenant_id is not None:
            self._accounts[key] = tenant_id
        return tenant_id

    async def connection(self, channel: str, account: str) -> Connection | None:
        tenant_id = await self.account_tenant(channel, account)
        if tenant_id is None:
            return None
        business_account = _business_account(channel, account)
        for c in await self.connections(tenant_id, channel):
            if (c.business_account_id == business_account if business_account is not None
                    else c.platform_account_id == account):
                return c
        return None

    async def connections(self, tenant_id: uuid.UUID, channel: str) -> list[Connection]:
        key = (tenant_id, channel)
        hit = self._connections.get(key)
        if hit is not None:
            return hit
        found = await repository.connections(self.pool, self.secrets, tenant_id, channel)
        self._connections[key] = found
        return found

