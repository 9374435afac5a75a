"""Who is calling: a tenant API key (operator API, realtime feed) or the CRON_SECRET (legacy
callback). Both as `Authorization: Bearer <secret>`; anything else is 401.

A request is checked once, when it arrives. A response that lasts (the realtime stream) holds a
`Caller` and asks `still_valid()` again every few seconds, so that a revoked or expired key (or,
once staff logins exist, a session logged out) stops reading within seconds. Another way of
authenticating plugs in by producing a `Caller` with its own `still_valid`."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Header, HTTPException
from tistis_common import metrics
from tistis_common.admin import hash_api_key
from tistis_common.settings import Settings

from . import repository

if TYPE_CHECKING:
    import asyncpg

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    tenant_id: uuid.UUID
    # Is the credential this request came with still good (not revoked, not expired)?
    still_valid: Callable[[], Awaitable[bool]]


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _refuse(route: str, detail: str) -> HTTPException:
    metrics.API_REQUESTS.labels(route, "unauthorized").inc()
    return HTTPException(401, detail, headers=UNAUTHORIZED)


def key_caller(pool: asyncpg.Pool, route: str = "operator") -> Callable[..., Awaitable[Caller]]:
    """Dependency: who the presented tenant API key is, re-checkable while a response lasts."""

    async def authenticate(authorization: str | None = Header(None)) -> Caller:
        key = _bearer(authorization)
        if key is None or len(key) > 200:
            raise _refuse(route, "missing or malformed bearer API key")
        key_hash = hash_api_key(key)
        tenant_id = await repository.tenant_of_key(pool, key_hash)  # database away: 503
        if tenant_id is None:
            raise _refuse(route, "unknown, revoked or expired API key")

        async def still_valid() -> bool:
            return await repository.tenant_of_key(pool, key_hash) == tenant_id

        return Caller(tenant_id, still_valid)

    return authenticate


def tenant_key(pool: asyncpg.Pool, route: str = "operator") -> Callable[..., Awaitable[uuid.UUID]]:
    """Dependency: the tenant id the presented API key belongs to (checked once: a request)."""
    caller = key_caller(pool, route)

    async def authenticate(authorization: str | None = Header(None)) -> uuid.UUID:
        return (await caller(authorization)).tenant_id

    return authenticate


def cron_secret(settings: Settings) -> Callable[..., Awaitable[None]]:
    """Dependency: the legacy callback's shared secret, compared in constant time."""

    async def authenticate(authorization: str | None = Header(None)) -> None:
        token = _bearer(authorization)
        expected = settings.cron_secret
        if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
            raise _refuse("callback", "missing or wrong bearer secret")

    return authenticate
