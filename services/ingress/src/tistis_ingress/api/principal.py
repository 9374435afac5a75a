"""Who is calling the inbox API: a staff member's browser session (an HttpOnly cookie, which
the browser's EventSource sends too) or an API key (`Authorization: Bearer`), a tenant's key
from the CLI or a staff member's personal one. Either resolves to a `Principal`; every staff
action is recorded with it.

A cookie-authenticated write must carry `X-Requested-With` (a header a cross-site form cannot
set without a CORS preflight we never grant), on top of the cookie's SameSite=Strict."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request
from tistis_common import metrics
from tistis_common.admin import hash_api_key
from tistis_common.db import tenant_session
from tistis_common.settings import Settings

from . import ratelimit
from . import staff_repository as repo
from .auth import Caller

if TYPE_CHECKING:
    import asyncpg

SESSION_COOKIE = "tistis_session"
CSRF_HEADER = "x-requested-with"
_SAFE = ("GET", "HEAD", "OPTIONS")
_TOUCH_EVERY = 60.0  # seconds between two last_used_at writes of one key


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID
    user_id: uuid.UUID | None  # None: a tenant key from the CLI, acting as admin
    role: str
    key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    credential: tuple[str, str] = ("", "")  # (kind, hash), to check again later

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


async def resolve(pool: asyncpg.Pool, kind: str, credential_hash: str) -> Principal | None:
    if kind == "key":
        row = await repo.key_principal(pool, credential_hash)
        if row is None:
            return None
        return Principal(row["tenant_id"], row["user_id"], row["role"], key_id=row["key_id"],
                         credential=(kind, credential_hash))
    row = await repo.session_principal(pool, credential_hash)
    if row is None:
        return None
    return Principal(row["tenant_id"], row["user_id"], row["role"], session_id=row["session_id"],
                     credential=(kind, credential_hash))


async def still_valid(pool: asyncpg.Pool, principal: Principal) -> bool:
    """For long-lived requests (event streams): logged out, disabled or revoked since?"""
    return await resolve(pool, *principal.credential) is not None


def _refuse(route: str, detail: str) -> HTTPException:
    metrics.API_REQUESTS.labels(route, "unauthorized").inc()
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def staff(pool: asyncpg.Pool, settings: Settings, route: str = "inbox"
          ) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: the caller's principal, rate limited per key or session."""
    touched: dict[uuid.UUID, float] = {}

    async def authenticate(request: Request) -> Principal:
        authorization = request.headers.get("authorization")
        if authorization:
            scheme, _, key = authorization.partition(" ")
            key = key.strip()
            if scheme.lower() != "bearer" or not key or len(key) > 200:
                raise _refuse(route, "missing or malformed bearer API key")
            principal = await resolve(pool, "key", hash_api_key(key))
            if principal is None:
                raise _refuse(route, "unknown or revoked API key")
        else:
            token = request.cookies.get(SESSION_COOKIE)
            if not token or len(token) > 200:
                raise _refuse(route, "not logged in")
            principal = await resolve(pool, "session", token_hash(token))
            if principal is None:
                raise _refuse(route, "session ended, log in again")
            if request.method not in _SAFE and not request.headers.get(CSRF_HEADER):
                metrics.API_REQUESTS.labels(route, "forbidden").inc()
                raise HTTPException(403, "a session write needs the X-Requested-With header")
        bucket = f"key:{principal.key_id}" if principal.key_id else f"session:{principal.session_id}"
        await ratelimit.enforce(pool, bucket, settings.inbox_requests_per_minute, 60, route)
        if principal.key_id and time.monotonic() - touched.get(principal.key_id, -1e9) > _TOUCH_EVERY:
            touched[principal.key_id] = time.monotonic()
            async with tenant_session(pool, principal.tenant_id) as conn:
                await repo.touch_key(conn, principal.key_id)
        return principal

    return authenticate


def stream_caller(pool: asyncpg.Pool, settings: Settings) -> Callable[[Request], Awaitable[Caller]]:
    """The realtime stream's dependency: a key or a session (what the browser's EventSource
    sends), re-checked while the stream lasts like any credential (auth.Caller)."""
    principal_of = staff(pool, settings, "realtime")

    async def authenticate(request: Request) -> Caller:
        principal = await principal_of(request)
        return Caller(principal.tenant_id, lambda: still_valid(pool, principal))

    return authenticate
