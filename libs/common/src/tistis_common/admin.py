"""Tenant administration (the ops CLI and the test fixtures use it): tenants, channel
connections, AI context and the clinic catalog (branches, services, FAQs), loaded from a readable
YAML file. Runs with the schema owner's connection, scoped per tenant like everything else."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tistis_common.db import scope
from tistis_common.secrets import SecretBox, mask

from .staff import create_user

if TYPE_CHECKING:
    import asyncpg

_AI_FIELDS = (
    "system_prompt", "temperature", "max_tokens", "response_style", "business_hours",
    "escalation_keywords", "auto_escalate_after_messages", "ai_provider", "model", "language",
    "opt_out_words", "opt_in_words",
)


def _date(value: str | date) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


async def upsert_tenant(conn: asyncpg.Connection, slug: str, name: str, timezone: str) -> uuid.UUID:
    return await conn.fetchval(
        """INSERT INTO tenants (slug, name, timezone) VALUES ($1, $2, $3)
           ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone
           RETURNING id""",
        slug, name, timezone,
    )


async def upsert_connection(conn: asyncpg.Connection, tenant_id: uuid.UUID, c: dict[str, Any],
                            box: SecretBox) -> None:
    await scope(conn, tenant_id)
    await conn.execute(
        """INSERT INTO channel_connections (tenant_id, channel, platform_account_id, access_token,
                                            verify_token, app_secret, app_id, settings,
                                            refresh_token, token_expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (channel, platform_account_id) DO UPDATE SET
             access_token = EXCLUDED.access_token, verify_token = EXCLUDED.verify_token,
             app_secret = EXCLUDED.app_secret, app_id = EXCLUDED.app_id,
             settings = EXCLUDED.settings, refresh_token = EXCLUDED.refresh_token,
             token_expires_at = EXCLUDED.token_expires_at, updated_at = now()
           WHERE channel_connections.tenant_id = EXCLUDED.tenant_id""",
        tenant_id, c["channel"], str(c["platform_account_id"]), box.seal(c.get("access_token")),
        box.seal(c.get("verify_token")), box.seal(c.get("app_secret")), c.get("app_id"),
        c.get("settings") or {}, box.seal(c.get("refresh_token")), c.get("token_expires_at"),
    )


async def set_ai_context(conn: asyncpg.Connection, tenant_id: uuid.UUID, ctx: dict[str, Any]) -> None:
    await scope(conn, tenant_id)
    await conn.execute(
        "INSERT INTO ai_tenant_context (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant_id
    )
    for field in _AI_FIELDS:  # names come from the fixed tuple above, never from input
        if field in ctx:
            await conn.execute(
                f"UPDATE ai_tenant_context SET {field} = $2, updated_at = now() WHERE tenant_id = $1",
                tenant_id, ctx[field],
            )


async def import_catalog(conn: asyncpg.Connection, tenant_id: uuid.UUID, doc: dict[str, Any]) -> None:
    await scope(conn, tenant_id)
    for b in doc.get("branches", []):
        await conn.execute(
            """INSERT INTO branches (tenant_id, name, address, phone, timezone, opening_hours,
                                     closed_days, capacity)
               VALUES ($1, $2, $3, $4, $5, $6, $7::date[], $8)
               ON CONFLICT (tenant_id, name) DO UPDATE SET address = EXCLUDED.address,
                 phone = EXCLUDED.phone, timezone = EXCLUDED.timezone,
                 opening_hours = EXCLUDED.opening_hours, closed_days = EXCLUDED.closed_days,
                 capacity = EXCLUDED.capacity""",
            tenant_id, b["name"], b.get("address"), b.get("phone"),
            b.get("timezone", "America/Mexico_City"), b.get("opening_hours", {}),
            [_date(d) for d in b.get("closed_days", [])], b.get("capacity", 1),
        )
    for s in doc.get("services", []):
        await conn.execute(
            """INSERT INTO services (tenant_id, name, description, price_min, price_max, currency,
                                     duration_minutes, high_value, keywords)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (tenant_id, name) DO UPDATE SET description = EXCLUDED.description,
                 price_min = EXCLUDED.price_min, price_max = EXCLUDED.price_max,
                 currency = EXCLUDED.currency, duration_minutes = EXCLUDED.duration_minutes,
                 high_value = EXCLUDED.high_value, keywords = EXCLUDED.keywords""",
            tenant_id, s["name"], s.get("description"), s.get("price_min"), s.get("price_max"),
            s.get("currency", "MXN"), s.get("duration_minutes", 60), s.get("high_value", False),
            s.get("keywords", []),
        )
    for f in doc.get("faqs", []):
        await conn.execute(
            """INSERT INTO faqs (tenant_id, question, answer, keywords) VALUES ($1, $2, $3, $4)
               ON CONFLICT (tenant_id, question) DO UPDATE SET answer = EXCLUDED.answer,
                 keywords = EXCLUDED.keywords""",
            tenant_id, f["question"], f["answer"], f.get("keywords", []),
        )


async def load_tenant(conn: asyncpg.Connection, doc: dict[str, Any], box: SecretBox) -> uuid.UUID:
    """Create or update a whole tenant from a fixture document, in one transaction."""
    async with conn.transaction():
        t = doc["tenant"]
        tenant_id = await upsert_tenant(conn, t["slug"], t["name"], t.get("timezone", "America/Mexico_City"))
        for c in doc.get("connections", []):
            await upsert_connection(conn, tenant_id, c, box)
        await set_ai_context(conn, tenant_id, doc.get("ai_context", {}))
        await import_catalog(conn, tenant_id, doc)
        await import_inbox(conn, tenant_id, doc)
    return tenant_id


async def import_inbox(conn: asyncpg.Connection, tenant_id: uuid.UUID, doc: dict[str, Any]) -> None:
    """Staff accounts and canned replies of the inbox (the demo's logins are sandbox values)."""
    await scope(conn, tenant_id)
    for u in doc.get("staff", []):
        await create_user(conn, tenant_id, u["email"], u["name"], u.get("role", "agent"),
                          u["password"], u.get("language", "es"))
    for r in doc.get("canned_replies", []):
        await conn.execute(
            """INSERT INTO canned_replies (tenant_id, shortcut, body) VALUES ($1, $2, $3)
               ON CONFLICT (tenant_id, shortcut) DO UPDATE SET body = EXCLUDED.body""",
            tenant_id, r["shortcut"], r["body"],
        )


def read_fixture(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- ops CLI helpers

CHANNELS = ("whatsapp", "instagram", "facebook", "tiktok")
_SECRET_FIELDS = ("access_token", "verify_token", "app_secret", "refresh_token")
API_KEY_PREFIX = "tt_"


async def tenant_id_by_slug(conn: asyncpg.Connection, slug: str) -> uuid.UUID | None:
    return await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", slug)


async def list_connections(conn: asyncpg.Connection, tenant_id: uuid.UUID, box: SecretBox,
                           channel: str | None = None) -> list[dict[str, Any]]:
    """Connections of a tenant with their secrets masked."""
    await scope(conn, tenant_id)
    rows = await conn.fetch(
        """SELECT channel, platform_account_id, access_token, verify_token, app_secret, app_id,
                  refresh_token, token_expires_at,
                  settings, enabled, healthy, last_error, last_error_at, updated_at
           FROM channel_connections WHERE tenant_id = $1 AND ($2::text IS NULL OR channel = $2)
           ORDER BY channel, platform_account_id""",
        tenant_id, channel,
    )
    out = []
    for r in rows:
        d = dict(r)
        for field in _SECRET_FIELDS:
            d[field] = mask(box.open(d[field]))
        out.append(d)
    return out


@dataclass(frozen=True)
class ConnectionToken:
    channel: str
    platform_account_id: str
    access_token: str | None  # opened (unmasked)


async def connection_secrets(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                             box: SecretBox) -> list[ConnectionToken]:
    """Unmasked, for the token check only."""
    await scope(conn, tenant_id)
    rows = await conn.fetch(
        """SELECT channel, platform_account_id, access_token FROM channel_connections
           WHERE tenant_id = $1 AND enabled ORDER BY channel, platform_account_id""",
        tenant_id,
    )
    return [ConnectionToken(r["channel"], r["platform_account_id"], box.open(r["access_token"]))
            for r in rows]


async def rotate_connection(conn: asyncpg.Connection, tenant_id: uuid.UUID, channel: str,
                            platform_account_id: str | None, changes: dict[str, str],
                            box: SecretBox, token_expires_at: datetime | None = None) -> int:
    """New secrets for a connection; a rotation also clears the last error (a fresh start),
    a refused token refresh included."""
    await scope(conn, tenant_id)
    status = await conn.execute(
        """UPDATE channel_connections SET
             access_token = COALESCE($4, access_token), verify_token = COALESCE($5, verify_token),
             app_secret = COALESCE($6, app_secret), refresh_token = COALESCE($7, refresh_token),
             token_expires_at = COALESCE($8, token_expires_at), token_refresh_error = NULL,
             healthy = true, last_error = NULL, last_error_at = NULL, updated_at = now()
           WHERE tenant_id = $1 AND channel = $2 AND ($3::text IS NULL OR platform_account_id = $3)""",
        tenant_id, channel, platform_account_id, box.seal(changes.get("access_token")),
        box.seal(changes.get("verify_token")), box.seal(changes.get("app_secret")),
        box.seal(changes.get("refresh_token")), token_expires_at,
    )
    return int(status.split()[-1])


async def record_connection_check(conn: asyncpg.Connection, tenant_id: uuid.UUID, channel: str,
                                  platform_account_id: str, error: str | None) -> None:
    await scope(conn, tenant_id)
    await conn.execute(
        """UPDATE channel_connections SET healthy = $4, last_error = COALESCE($5, last_error),
             last_error_at = CASE WHEN $5::text IS NULL THEN last_error_at ELSE now() END
           WHERE tenant_id = $1 AND channel = $2 AND platform_account_id = $3""",
        tenant_id, channel, platform_account_id, error is None, error,
    )


@dataclass(frozen=True)
class RefusedRefresh:
    channel: str
    platform_account_id: str
    error: str
    token_expires_at: datetime | None


async def refused_token_refreshes(conn: asyncpg.Connection,
                                  tenant_id: uuid.UUID) -> list[RefusedRefresh]:
    """Connections whose last token refresh the platform refused (the dispatcher's refresher):
    they stop working at `token_expires_at` unless the clinic connects them again."""
    await scope(conn, tenant_id)
    rows = await conn.fetch(
        """SELECT channel, platform_account_id, token_refresh_error, token_expires_at
           FROM channel_connections
           WHERE tenant_id = $1 AND enabled AND token_refresh_error IS NOT NULL
           ORDER BY channel, platform_account_id""",
        tenant_id,
    )
    return [RefusedRefresh(r["channel"], r["platform_account_id"], r["token_refresh_error"],
                           r["token_expires_at"]) for r in rows]


async def reseal_secrets(conn: asyncpg.Connection, box: SecretBox) -> int:
    """Every stored connection secret re-encrypted under the current key (values stored before
    encryption too), one transaction per tenant; returns how many connections were rewritten."""
    done = 0
    for tenant_id in await conn.fetchval("SELECT coalesce(array_agg(id), '{}') FROM tenants"):
        async with conn.transaction():
            await scope(conn, tenant_id)
            rows = await conn.fetch(
                """SELECT id, access_token, verify_token, app_secret, refresh_token
                   FROM channel_connections WHERE tenant_id = $1 FOR UPDATE""", tenant_id,
            )
            for r in rows:
                await conn.execute(
                    """UPDATE channel_connections SET access_token = $2, verify_token = $3,
                         app_secret = $4, refresh_token = $5 WHERE id = $1""",
                    r["id"], *(box.reseal(r[f]) for f in _SECRET_FIELDS),
                )
            done += len(rows)
    return done


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def issue_api_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str,
                        expires_at: datetime | None = None, *,
                        user_id: uuid.UUID | None = None) -> tuple[uuid.UUID, str]:
    """A new key (256 random bits); only its hash is stored, so it is shown once. With a
    `user_id` it is that staff member's personal key (acts as them, dies when they are
    disabled). Past `expires_at` (if given) it is refused like a revoked one."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    await scope(conn, tenant_id)
    key_id = await conn.fetchval(
        """INSERT INTO api_keys (tenant_id, name, key_hash, prefix, user_id, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        tenant_id, name, hash_api_key(key), key[:10], user_id, expires_at,
    )
    return key_id, key


async def revoke_api_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    await scope(conn, tenant_id)
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
        tenant_id, key_id,
    )
    return status.endswith(" 1")


@dataclass(frozen=True)
class ApiKeyInfo:
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None


async def list_api_keys(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[ApiKeyInfo]:
    await scope(conn, tenant_id)
    rows = await conn.fetch(
        """SELECT id, name, prefix, created_at, revoked_at, expires_at FROM api_keys WHERE tenant_id = $1
           ORDER BY created_at""",
        tenant_id,
    )
    return [ApiKeyInfo(**dict(r)) for r in rows]
