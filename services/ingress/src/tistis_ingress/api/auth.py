"""Who is calling: a tenant API key (operator API, realtime feed) or the CRON_SECRET (legacy
callback). Both as `Authorization: Bearer <secret>`; anything else is 401."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import Header, HTTPException
from tistis_common import metrics
from tistis_common.admin import hash_api_key
from tistis_common.settings import Settings

from . import repository

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


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


def tenant_key(pool: asyncpg.Pool, route: str = "operator") -> Callable[..., Awaitable[uuid.UUID]]:
    """Dependency: the tenant id the presented API key belongs to."""

    async def authenticate(authorization: str | None = Header(None)) -> uuid.UUID:
        key = _bearer(authorization)
        if key is None or len(key) > 200:
            raise _refuse(route, "missing or malformed bearer API key")
        tenant_id = await repository.tenant_of_key(pool, hash_api_key(key))
        if tenant_id is None:
            raise _refuse(route, "unknown or revoked API key")
        return tenant_id

    return authenticate


def cron_secret(settings: Settings) -> Callable[..., Awaitable[None]]:
    """Dependency: the legacy callback's shared secret, compared in constant time."""

    async def authenticate(authorization: str | None = Header(None)) -> None:
        token = _bearer(authorization)
        expected = settings.cron_secret
        if not expected or token is None or not hmac.compare_digest(token.encode(), expected.encode()):
            raise _refuse("callback", "missing or wrong bearer secret")

    return authenticate
