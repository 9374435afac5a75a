"""Tokens that expire, refreshed by the dispatcher (it owns the platform clients) before they do.

- TikTok Business Messaging uses TikTok Accounts API tokens: the access token lasts a day
  (`expires_in` 86400), the refresh token a year, and TikTok may rotate the refresh token on
  each refresh, so the one in the answer is always stored.
  `POST {TIKTOK_API_BASE_URL}/open_api/{version}/tt_user/oauth2/refresh_token/`, JSON body
  `{"client_id", "client_secret", "grant_type": "refresh_token", "refresh_token"}`; answer
  `{"code": 0, "message": "OK", "request_id", "data": {"access_token", "expires_in",
  "refresh_token", "refresh_token_expires_in", "open_id", "scope", "token_type"}}`, a non-zero
  `code` is a refusal. Sources: github.com/bububa/tiktok-business (ttuser.RefreshToken),
  github.com/tiktok/tiktok-business-api-sdk (js_sdk/docs/AuthenticationApi.md: "refresh the
  access token with the refresh token on a daily basis").
- Instagram API with Instagram Login: long-lived tokens last 60 days and are renewed with
  themselves (at least 24 h old, not expired):
  `GET {INSTAGRAM_API_BASE_URL}/refresh_access_token?grant_type=ig_refresh_token&access_token=`;
  answer `{"access_token", "token_type": "bearer", "expires_in"}`, errors in the Graph shape
  (190: expired or invalid). Source: developers.facebook.com/documentation/instagram-platform/
  reference/refresh_access_token.

When: every `token_refresh_interval_seconds` for the tokens within the channel's margin
(`keep_fresh`), before a send whose token is within it, and once when a send is answered
"token expired". A refusal marks the connection unhealthy with `token_refresh_error` (shown by
`tistis doctor`); one refresh per connection at a time (`repo.claim_refresh`), with no database
connection held during the platform call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tistis_common import metrics
from tistis_common.db import tenant_session
from tistis_common.logging import get_logger
from tistis_common.runtime import BackgroundTask
from tistis_common.settings import Settings
from tistis_common.tenant_labels import TENANT_LABELS

from tistis_dispatcher import repository as repo
from tistis_dispatcher.platform import Account, NewTokens, RefreshRefused, SendError, Transient

if TYPE_CHECKING:
    from tistis_dispatcher.deps import Deps

log = get_logger(__name__)

REFRESHABLE = frozenset({"tiktok", "instagram"})
# A claim older than this belongs to an attempt that died mid-refresh: taken over.
CLAIM_STALE_SECONDS = 60.0


def margin(settings: Settings, channel: str) -> timedelta:
    seconds = (settings.tiktok_token_refresh_margin_seconds if channel == "tiktok"
               else settings.instagram_token_refresh_margin_seconds)
    return timedelta(seconds=seconds)


def refreshable(account: Account) -> bool:
    return account.channel in REFRESHABLE and account.token_expires_at is not None


def due(account: Account, settings: Settings) -> bool:
    """Within the margin and not refused before (a refused refresh waits for a new token)."""
    return (refreshable(account) and not account.refresh_failed
            and account.token_expires_at is not None
            and account.token_expires_at - datetime.now(UTC) < margin(settings, account.channel))


async def refresh(deps: Deps, tenant_id: uuid.UUID, connection_id: uuid.UUID) -> str | None:
    """The connection's new access token, stored; None while another attempt refreshes it.
    Raises RefreshRefused (the connection is marked unhealthy) or Transient (tried again later)."""
    async with tenant_session(deps.pool, tenant_id) as conn:
        row = await repo.claim_refresh(conn, connection_id, CLAIM_STALE_SECONDS)
    if row is None:
        return None
    channel = row.channel
    fields = {"connection_id": str(connection_id), "channel": channel}
    box = deps.secrets
    try:
        if channel == "tiktok":
            new = await deps.platform.refresh_tiktok(
                row.app_id or deps.settings.tiktok_client_key,
                box.open(row.app_secret) or deps.settings.tiktok_client_secret,
                box.open(row.refresh_token))
        elif channel == "instagram":
            new = await deps.platform.refresh_instagram(box.open(row.access_token))
        else:
            raise RefreshRefused(f"{channel} tokens are not refreshed")
    except RefreshRefused as exc:
        async with tenant_session(deps.pool, tenant_id) as conn:
            await repo.refresh_refused(conn, connection_id, f"token refresh: {exc}")
        metrics.TOKEN_REFRESHES.labels(channel, "refused").inc()
        metrics.CONNECTION_HEALTHY.labels(TENANT_LABELS.of(tenant_id), channel).set(0)
        log.error("token.refresh_refused", code=exc.code, error=exc.title, **fields)
        raise
    except BaseException as exc:
        with suppress(Exception):
            async with tenant_session(deps.pool, tenant_id) as conn:
                await repo.end_refresh_claim(conn, connection_id)
        if isinstance(exc, Transient):
            metrics.TOKEN_REFRESHES.labels(channel, "transient").inc()
            log.warning("token.refresh_failed", error=exc.title, **fields)
        raise
    await _store(deps, tenant_id, connection_id, new)
    metrics.TOKEN_REFRESHES.labels(channel, "refreshed").inc()
    log.info("token.refreshed", expires_at=new.expires_at.isoformat(), **fields)
    return new.access_token


async def _store(deps: Deps, tenant_id: uuid.UUID, connection_id: uuid.UUID,
                 new: NewTokens) -> None:
    box = deps.secrets
    async with tenant_session(deps.pool, tenant_id) as conn:
        await repo.store_tokens(conn, connection_id, box.seal(new.access_token) or "",
                                box.seal(new.refresh_token), new.expires_at)


def _renewed(account: Account, token: str) -> Account:
    return dataclasses.replace(account, access_token=token, refresh_failed=False)


async def before_send(tenant_id: uuid.UUID, account: Account, deps: Deps) -> tuple[Account, bool]:
    """The account with a fresh token when its token is due; and whether a refresh was tried.
    The old token still works until it expires, so a failed refresh does not stop the send."""
    if not due(account, deps.settings):
        return account, False
    try:
        token = await refresh(deps, tenant_id, account.connection_id)
    except SendError:
        return account, True  # logged and counted by `refresh`
    return (account if token is None else _renewed(account, token)), True


async def after_refusal(tenant_id: uuid.UUID, account: Account, deps: Deps) -> Account:
    """The platform answered "token expired": the account with a refreshed token, once.
    Raises RefreshRefused, or Transient while another attempt is refreshing it."""
    token = await refresh(deps, tenant_id, account.connection_id)
    if token is None:
        raise Transient("the token is being refreshed by another attempt")
    return _renewed(account, token)


async def refresh_expiring(deps: Deps) -> int:
    """One round over every tenant's tokens within their margin; returns how many were renewed."""
    s = deps.settings
    async with deps.pool.acquire() as conn:
        rows = await repo.tokens_expiring(conn, s.tiktok_token_refresh_margin_seconds,
                                          s.instagram_token_refresh_margin_seconds)
    renewed = 0
    for row in rows:
        with suppress(SendError):  # logged and counted by `refresh`
            await TENANT_LABELS.load(deps.pool, row.tenant_id)
            if await refresh(deps, row.tenant_id, row.connection_id) is not None:
                renewed += 1
    return renewed


def keep_fresh(deps: Deps) -> BackgroundTask:
    """The dispatcher's background task: `refresh_expiring` now and every interval."""

    async def loop(stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await refresh_expiring(deps)
            except Exception as exc:  # the database away: the next round tries again
                log.warning("token.refresh_round_failed", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(),
                                       timeout=deps.settings.token_refresh_interval_seconds)

    return loop
