"""`tistis tenant|connection|ai-context|catalog|api-key ...`: tenant administration."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import typer
import yaml
from tistis_common import admin
from tistis_common.db import SLUG

from .common import CliError, fail, owner_db, resolve_tenant, run, secret_box, settings
from .tokencheck import check_token

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.secrets import SecretBox


class ChannelName(StrEnum):
    whatsapp = "whatsapp"
    instagram = "instagram"
    facebook = "facebook"
    tiktok = "tiktok"


class Provider(StrEnum):
    claude = "claude"
    n8n = "n8n"
    off = "off"


tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
connection_app = typer.Typer(help="Channel connections (secrets are always shown masked).",
                             no_args_is_help=True)
ai_context_app = typer.Typer(help="The AI context of a tenant.", no_args_is_help=True)
catalog_app = typer.Typer(help="Branches, services and FAQs.", no_args_is_help=True)
api_key_app = typer.Typer(help="Tenant API keys for the operator API (stored hashed).",
                          no_args_is_help=True)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str, ensure_ascii=False, indent=2))


# ------------------------------------------------------------------------ tenants

@tenant_app.command("create")
def tenant_create(
    slug: str,
    name: str = typer.Option(..., "--name", help="Display name"),
    timezone: str = typer.Option("America/Mexico_City", "--timezone"),
) -> None:
    """Create a tenant (the slug goes into the webhook URLs)."""
    if not SLUG.fullmatch(slug):
        fail(f"bad tenant slug {slug!r} (lowercase letters, digits, dashes; 2-63 chars)")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown timezone {timezone!r}")

    async def go() -> uuid.UUID:
        async with owner_db() as conn:
            if await admin.tenant_id_by_slug(conn, slug):
                raise CliError(f"tenant {slug!r} already exists")
            return await admin.upsert_tenant(conn, slug, name, timezone)

    typer.echo(f"tenant {slug} created: {run(go())}")


# -------------------------------------------------------------------- connections

@connection_app.command("add")
def connection_add(
    slug: str,
    channel: ChannelName,
    account_id: str = typer.Argument(
        ..., help="phone_number_id / Page id / IG account id / TikTok business id"
    ),
    access_token: str = typer.Option(..., "--access-token", envvar="TISTIS_ACCESS_TOKEN"),
    verify_token: str | None = typer.Option(None, "--verify-token"),
    app_secret: str | None = typer.Option(None, "--app-secret", envvar="TISTIS_APP_SECRET"),
    app_id: str | None = typer.Option(None, "--app-id"),
    refresh_token: str | None = typer.Option(None, "--refresh-token",
                                             envvar="TISTIS_REFRESH_TOKEN"),
    expires_in: int | None = typer.Option(
        None, "--expires-in", help="Seconds the access token lasts (TikTok, Instagram Login): "
        "the dispatcher refreshes it before then"),
) -> None:
    """Add (or update) a channel connection of a tenant."""
    if not account_id.strip():
        fail("account id is empty")

    async def go() -> None:
        async with owner_db() as conn, conn.transaction():
            tenant_id = await resolve_tenant(conn, slug)
            await admin.upsert_connection(conn, tenant_id, {
                "channel": channel.value, "platform_account_id": account_id,
                "access_token": access_token, "verify_token": verify_token,
                "app_secret": app_secret, "app_id": app_id, "refresh_token": refresh_token,
                "token_expires_at": _expiry(expires_in),
            }, secret_box())
            mine = await admin.list_connections(conn, tenant_id, secret_box(), channel.value)
            if not any(c["platform_account_id"] == account_id for c in mine):
                # upsert_connection leaves an account of another tenant untouched
                raise CliError(f"{channel.value} account {account_id} belongs to another tenant")

    run(go())
    typer.echo(f"{channel.value} connection {account_id} saved for {slug}")


@connection_app.command("show")
def connection_show(
    slug: str,
    channel: ChannelName | None = typer.Option(None, "--channel"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A tenant's connections, secrets masked."""

    async def go() -> list[dict]:
        async with owner_db() as conn, conn.transaction():
            tenant_id = await resolve_tenant(conn, slug)
            return await admin.list_connections(conn, tenant_id, secret_box(),
                                                channel.value if channel else None)

    rows = run(go())
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        typer.echo("no connections")
    for r in rows:
        state = "healthy" if r["healthy"] else "UNHEALTHY"
        typer.echo(
            f"{r['channel']:<10} {r['platform_account_id']:<20} "
            f"{'enabled' if r['enabled'] else 'disabled'} {state}  token={r['access_token']} "
            f"verify={r['verify_token']} secret={r['app_secret']} app_id={r['app_id']}"
            + (f"  last_error={r['last_error']!r}" if r["last_error"] else "")
        )


@connection_app.command("rotate")
def connection_rotate(
    slug: str,
    channel: ChannelName,
    account_id: str | None = typer.Option(
        None, "--account", help="Only this account (default: all of the channel)"
    ),
    access_token: str | None = typer.Option(None, "--access-token", envvar="TISTIS_ACCESS_TOKEN"),
    verify_token: str | None = typer.Option(None, "--verify-token"),
    app_secret: str | None = typer.Option(None, "--app-secret", envvar="TISTIS_APP_SECRET"),
    refresh_token: str | None = typer.Option(None, "--refresh-token",
                                             envvar="TISTIS_REFRESH_TOKEN"),
    expires_in: int | None = typer.Option(None, "--expires-in",
                                          help="Seconds the new access token lasts"),
) -> None:
    """Replace a connection's secrets (and clear its last error)."""
    changes = {k: v for k, v in (("access_token", access_token), ("verify_token", verify_token),
                                 ("app_secret", app_secret), ("refresh_token", refresh_token))
               if v}
    if not changes:
        fail("nothing to rotate: give --access-token, --verify-token, --app-secret or "
             "--refresh-token")

    async def go() -> int:
        async with owner_db() as conn, conn.transaction():
            tenant_id = await resolve_tenant(conn, slug)
            return await admin.rotate_connection(conn, tenant_id, channel.value, account_id, changes,
                                                 secret_box(), _expiry(expires_in))

    n = run(go())
    if n == 0:
        fail(f"no {channel.value} connection{' ' + account_id if account_id else ''} for {slug}")
    typer.echo(f"rotated {', '.join(changes)} on {n} {channel.value} connection(s) of {slug}")


def _expiry(expires_in: int | None) -> datetime | None:
    return None if expires_in is None else datetime.now(UTC) + timedelta(seconds=expires_in)


async def refused_refreshes(conn: asyncpg.Connection, slug: str) -> list[tuple[str, str, str]]:
    """(channel, account, detail) of the connections whose token refresh was refused."""
    async with conn.transaction():
        tenant_id = await resolve_tenant(conn, slug)
        rows = await admin.refused_token_refreshes(conn, tenant_id)
    return [(r.channel, r.platform_account_id,
             f"{r.error}; the token expires "
             f"{r.token_expires_at.isoformat() if r.token_expires_at else 'soon'}: "
             "connect the channel again (tistis connection rotate)") for r in rows]


async def check_connections(conn: asyncpg.Connection, http: httpx.AsyncClient, box: SecretBox,
                            slug: str, channel: str | None) -> list[tuple[str, str, str, str]]:
    """(channel, account, status, detail) for each enabled connection; records the outcome.
    On the caller's connection and client, so that `tistis doctor` checks every tenant's
    connections with one of each (connecting costs more than the check)."""
    s = settings()
    async with conn.transaction():
        tenant_id = await resolve_tenant(conn, slug)
        rows = [r for r in await admin.connection_secrets(conn, tenant_id, box)
                if channel is None or r.channel == channel]
    out: list[tuple[str, str, str, str]] = []
    for r in rows:
        result = await check_token(http, s, r.channel, r.platform_account_id, r.access_token)
        if result.status != "unknown":
            async with conn.transaction():
                await admin.record_connection_check(
                    conn, tenant_id, r.channel, r.platform_account_id,
                    None if result.status == "ok" else f"token check: {result.detail}",
                )
        out.append((r.channel, r.platform_account_id, result.status, result.detail))
    return out


async def _check_one_tenant(slug: str, channel: str | None) -> list[tuple[str, str, str, str]]:
    async with owner_db() as conn, httpx.AsyncClient(timeout=10) as http:
        return await check_connections(conn, http, secret_box(), slug, channel)


@connection_app.command("check")
def connection_check(slug: str, channel: ChannelName | None = typer.Option(None, "--channel")) -> None:
    """Ask each platform whether the stored token still works; exit 1 if one is refused."""
    results = run(_check_one_tenant(slug, channel.value if channel else None))
    if not results:
        fail(f"no enabled connections for {slug}")
    for ch, account, status, detail in results:
        typer.echo(f"{status:<8} {ch:<10} {account:<20} {detail}")
    if any(status == "bad" for *_, status, _ in results):
        raise typer.Exit(1)


# --------------------------------------------------------------------- AI context

@ai_context_app.command("set")
def ai_context_set(
    slug: str,
    system_prompt: str | None = typer.Option(None, "--system-prompt"),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=1.0),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, max=8192),
    response_style: str | None = typer.Option(None, "--response-style"),
    ai_provider: Provider | None = typer.Option(None, "--ai-provider"),
    model: str | None = typer.Option(None, "--model"),
    language: str | None = typer.Option(None, "--language"),
    escalation_keywords: list[str] | None = typer.Option(None, "--escalation-keyword"),
    auto_escalate_after: int | None = typer.Option(None, "--auto-escalate-after", min=1),
    from_file: Path | None = typer.Option(None, "--from", exists=True, dir_okay=False,
                                          help="YAML with the same field names"),
) -> None:
    """Set fields of a tenant's AI context (only the ones given)."""
    ctx: dict[str, Any] = {}
    if from_file:
        doc = yaml.safe_load(from_file.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            fail(f"{from_file}: expected a mapping of AI context fields")
        unknown = set(doc) - set(admin._AI_FIELDS)
        if unknown:
            fail(f"{from_file}: unknown fields {sorted(unknown)}")
        ctx.update(doc)
    given = {
        "system_prompt": system_prompt, "temperature": temperature, "max_tokens": max_tokens,
        "response_style": response_style, "ai_provider": ai_provider.value if ai_provider else None,
        "model": model, "language": language, "escalation_keywords": escalation_keywords or None,
        "auto_escalate_after_messages": auto_escalate_after,
    }
    ctx.update({k: v for k, v in given.items() if v is not None})
    if not ctx:
        fail("nothing to set: give at least one option (see --help)")

    async def go() -> None:
        async with owner_db() as conn, conn.transaction():
            await admin.set_ai_context(conn, await resolve_tenant(conn, slug), ctx)

    run(go())
    typer.echo(f"AI context of {slug} updated: {', '.join(sorted(ctx))}")


# ------------------------------------------------------------------------ catalog

@catalog_app.command("import")
def catalog_import(slug: str, path: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Create or update branches, services and FAQs from a YAML file (the fixture's format)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        fail(f"{path}: not YAML ({str(exc).splitlines()[0]})")
    if not isinstance(doc, dict) or not any(k in doc for k in ("branches", "services", "faqs")):
        fail(f"{path}: expected branches, services and/or faqs lists")
    for key, required in (("branches", ("name",)), ("services", ("name",)),
                          ("faqs", ("question", "answer"))):
        items = doc.get(key, [])
        if not isinstance(items, list):
            fail(f"{path}: {key} must be a list")
        for i, item in enumerate(items):
            missing = [f for f in required if not isinstance(item, dict) or not item.get(f)]
            if missing:
                fail(f"{path}: {key}[{i}] lacks {', '.join(missing)}")

    async def go() -> None:
        async with owner_db() as conn, conn.transaction():
            await admin.import_catalog(conn, await resolve_tenant(conn, slug), doc)

    run(go())
    counts = ", ".join(f"{len(doc.get(k, []))} {k}" for k in ("branches", "services", "faqs"))
    typer.echo(f"catalog of {slug} imported: {counts}")


# ----------------------------------------------------------------------- API keys

@api_key_app.command("issue")
def api_key_issue(
    slug: str, name: str = typer.Option(..., "--name", help="Who or what uses it"),
    expires_in_days: float | None = typer.Option(None, "--expires-in-days", min=0.0,
                                                 help="Refused after this many days (default: never)"),
) -> None:
    """Issue a key; it is printed once and only its hash is kept."""
    expires_at = (datetime.now(UTC) + timedelta(days=expires_in_days)
                  if expires_in_days is not None else None)

    async def go() -> tuple[uuid.UUID, str]:
        async with owner_db() as conn, conn.transaction():
            return await admin.issue_api_key(conn, await resolve_tenant(conn, slug), name, expires_at)

    key_id, key = run(go())
    typer.echo(f"id:  {key_id}")
    typer.echo(f"key: {key}")
    typer.echo("store the key now: it cannot be shown again", err=True)


@api_key_app.command("revoke")
def api_key_revoke(slug: str, key_id: str) -> None:
    """Revoke a key by its id (effective on the next request)."""
    try:
        kid = uuid.UUID(key_id)
    except ValueError:
        fail(f"bad key id {key_id!r} (a UUID, see `tistis api-key list`)")

    async def go() -> bool:
        async with owner_db() as conn, conn.transaction():
            return await admin.revoke_api_key(conn, await resolve_tenant(conn, slug), kid)

    if not run(go()):
        fail(f"no live key {key_id} for {slug}")
    typer.echo(f"key {key_id} revoked")


@api_key_app.command("list")
def api_key_list(slug: str) -> None:
    """Keys of a tenant (prefix only)."""

    async def go() -> list[admin.ApiKeyInfo]:
        async with owner_db() as conn, conn.transaction():
            return await admin.list_api_keys(conn, await resolve_tenant(conn, slug))

    for r in run(go()):
        state = (f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at
                 else f"expires {r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else "live")
        typer.echo(f"{r.id}  {r.prefix}…  {r.name:<20} {state}")
