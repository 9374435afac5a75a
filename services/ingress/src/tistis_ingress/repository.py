"""All SQL of the webhook path: who a slug, a platform account or a business account is, and a
tenant's channel connections. Cached by `directory.Directory`; the operator API's and the
inbox's SQL is in `api/*repository.py`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tistis_common.db import tenant_by_slug, tenant_tx

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.secrets import SecretBox


@dataclass(frozen=True)
class Connection:
    tenant_id: uuid.UUID
    platform_account_id: str
    verify_token: str | None
    app_secret: str | None
    app_id: str | None
    business_account_id: str | None = None  # WhatsApp: the WABA its settings name


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    slug: str


async def tenant(pool: asyncpg.Pool, slug: str) -> Tenant | None:
    row = await tenant_by_slug(pool, slug)
    return None if row is None else Tenant(row["id"], row["slug"])


async def account_tenant(pool: asyncpg.Pool, channel: str, account: str) -> uuid.UUID | None:
    """The tenant whose enabled connection is this platform account (SECURITY DEFINER lookup)."""
    tenant_id: uuid.UUID | None = await pool.fetchval("SELECT account_tenant($1, $2)", channel,
                                                      account)
    return tenant_id


async def business_account_tenant(pool: asyncpg.Pool, business_account: str) -> uuid.UUID | None:
    """The tenant whose WhatsApp connection names this business account (WABA id)."""
    tenant_id: uuid.UUID | None = await pool.fetchval("SELECT business_account_tenant($1)",
                                                      business_account)
    return tenant_id


async def connections(pool: asyncpg.Pool, secrets: SecretBox, tenant_id: uuid.UUID,
                      channel: str) -> list[Connection]:
    """The ingress's one read of connection secrets (verify token, app secret)."""
    async with tenant_tx(pool, tenant_id) as conn:
        rows = await conn.fetch(
            """SELECT tenant_id, platform_account_id, verify_token, app_secret, app_id,
                      settings->>'business_account_id' AS business_account_id
               FROM channel_connections WHERE channel = $1 AND enabled""",
            channel,
        )
    return [
        Connection(r["tenant_id"], r["platform_account_id"], secrets.open(r["verify_token"]),
                   secrets.open(r["app_secret"]), r["app_id"], r["business_account_id"])
        for r in rows
    ]
