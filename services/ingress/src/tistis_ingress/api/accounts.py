"""Staff accounts of the inbox: login and logout (a session cookie for the page), who am I, the
tenant's users (admins create, disable, enable them) and personal API keys.

Login is rate limited per tenant+email and per client address, in the database so that the
limit holds across replicas. Logout and disabling end the sessions at once; an open event
stream notices at its next credential check (`realtime_recheck_seconds`)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from tistis_common import metrics
from tistis_common.admin import issue_api_key
from tistis_common.db import SLUG, tenant_by_slug, tenant_tx
from tistis_common.logging import get_logger
from tistis_common.staff import create_user, verify_password

from . import ratelimit
from . import staff_repository as repo
from .common import not_found
from .inbox_models import (
    ApiKey,
    IssuedKey,
    KeyList,
    Login,
    Me,
    NewKey,
    NewUser,
    StaffUser,
    UserList,
)
from .principal import SESSION_COOKIE, Principal, new_session_token, staff, token_hash
from .problems import errors

if TYPE_CHECKING:
    from ..deps import Deps

log = get_logger(__name__)
ROUTE = "inbox.accounts"
LOGIN_WINDOW = 900


def _forbidden(detail: str) -> HTTPException:
    metrics.API_REQUESTS.labels(ROUTE, "forbidden").inc()
    return HTTPException(403, detail)


def accounts_router(deps: Deps) -> APIRouter:
    pool, settings = deps.pool, deps.settings
    router = APIRouter(prefix="/api/v1", tags=["inbox: accounts"])
    who = Depends(staff(pool, settings, ROUTE))

    async def admin(principal: Principal = who) -> Principal:
        if not principal.is_admin:
            raise _forbidden("only an admin may do this")
        return principal

    async def person(principal: Principal = who) -> Principal:
        if principal.user_id is None:
            raise _forbidden("a tenant key has no personal keys; log in as a staff member")
        return principal

    @router.post("/auth/login", response_model=Me, responses=errors(401, 429))
    async def login(body: Login, request: Request, response: Response) -> Me:
        client = request.client.host if request.client else "unknown"
        who_hash = hashlib.sha256(f"{body.tenant}\x00{body.email.lower()}".encode()).hexdigest()
        await ratelimit.enforce(pool, f"login:{who_hash}",
                                settings.inbox_login_attempts_per_15_minutes, LOGIN_WINDOW, ROUTE)
        await ratelimit.enforce(pool, f"login-ip:{client}",
                                settings.inbox_login_attempts_per_address_15_minutes, LOGIN_WINDOW,
                                ROUTE)
        if not SLUG.fullmatch(body.tenant):  # no clinic is named so: nothing to time
            metrics.API_REQUESTS.labels(ROUTE, "unauthorized").inc()
            raise HTTPException(401, "wrong tenant, email or password")
        tenant = await tenant_by_slug(pool, body.tenant)
        row = None
        if tenant is not None:
            async with tenant_tx(pool, tenant["id"]) as conn:
                row = await repo.user_by_email(conn, body.email)
        usable = row is not None and row["disabled_at"] is None
        # Always one argon2 verification, so that timing tells no unknown email or tenant apart.
        ok = await asyncio.to_thread(verify_password,
                                     row["password_hash"] if row is not None and usable else None,
                                     body.password)
        if not (ok and tenant is not None and row is not None):
            metrics.API_REQUESTS.labels(ROUTE, "unauthorized").inc()
            log.info("inbox.login_refused", tenant=body.tenant)
            raise HTTPException(401, "wrong tenant, email or password")
        token = new_session_token()
        async with tenant_tx(pool, tenant["id"]) as conn:
            await repo.create_session(conn, tenant["id"], row["id"], token_hash(token),
                                      settings.inbox_session_hours)
            await repo.record_action(conn, tenant["id"], row["id"], None, "login", row["id"], {})
        response.set_cookie(SESSION_COOKIE, token, max_age=int(settings.inbox_session_hours * 3600),
                            httponly=True, samesite="strict", secure=settings.inbox_cookie_secure,
                            path="/")
        log.info("inbox.login", tenant_id=str(tenant["id"]), user_id=str(row["id"]))
        return Me(user=StaffUser(**{k: row[k] for k in StaffUser.model_fields}),
                  tenant_id=tenant["id"], tenant_slug=tenant["slug"], tenant_name=tenant["name"],
                  tenant_timezone=tenant["timezone"], role=row["role"], via="session")

    @router.post("/auth/logout", status_code=204, responses=errors(401))
    async def logout(response: Response, principal: Principal = who) -> Response:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if principal.session_id:
                await repo.revoke_session(conn, principal.session_id)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "logout", principal.user_id, {})
        answer = Response(status_code=204)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    @router.get("/me", response_model=Me, responses=errors(401))
    async def me(principal: Principal = who) -> Me:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            user = await repo.user(conn, principal.user_id) if principal.user_id else None
            tenant = await repo.tenant_profile(conn, principal.tenant_id)
        return Me(user=StaffUser(**dict(user)) if user else None, tenant_id=principal.tenant_id,
                  tenant_slug=tenant["slug"], tenant_name=tenant["name"],
                  tenant_timezone=tenant["timezone"], role="admin" if principal.is_admin else "agent",
                  via="session" if principal.session_id else "key")

    @router.get("/staff/users", response_model=UserList, responses=errors(401))
    async def users(principal: Principal = who) -> UserList:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await repo.users(conn)
        return UserList(users=[StaffUser(**dict(r)) for r in rows])

    @router.post("/staff/users", status_code=201, response_model=StaffUser,
                 responses=errors(401, 403))
    async def add_user(body: NewUser, principal: Principal = Depends(admin)) -> StaffUser:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            user_id = await create_user(conn, principal.tenant_id, body.email, body.name,
                                        body.role, body.password, body.language)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "user.created", user_id,
                                     {"email": body.email, "role": body.role})
            row = await repo.user(conn, user_id)
        assert row is not None
        return StaffUser(**dict(row))

    async def _disable(user_id: uuid.UUID, principal: Principal, disabled: bool) -> StaffUser:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if not await repo.set_disabled(conn, user_id, disabled):
                raise not_found(ROUTE, "user")
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id,
                                     "user.disabled" if disabled else "user.enabled", user_id, {})
            row = await repo.user(conn, user_id)
        assert row is not None
        return StaffUser(**dict(row))

    @router.post("/staff/users/{user_id}/disable", response_model=StaffUser,
                 responses=errors(401, 403, 404))
    async def disable_user(user_id: uuid.UUID, principal: Principal = Depends(admin)) -> StaffUser:
        return await _disable(user_id, principal, True)

    @router.post("/staff/users/{user_id}/enable", response_model=StaffUser,
                 responses=errors(401, 403, 404))
    async def enable_user(user_id: uuid.UUID, principal: Principal = Depends(admin)) -> StaffUser:
        return await _disable(user_id, principal, False)

    @router.get("/staff/me/keys", response_model=KeyList, responses=errors(401, 403))
    async def my_keys(principal: Principal = Depends(person)) -> KeyList:
        assert principal.user_id
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await repo.personal_keys(conn, principal.user_id)
        return KeyList(keys=[ApiKey(**dict(r)) for r in rows])

    @router.post("/staff/me/keys", status_code=201, response_model=IssuedKey,
                 responses=errors(401, 403))
    async def new_key(body: NewKey, principal: Principal = Depends(person)) -> IssuedKey:
        async with pool.acquire() as conn, conn.transaction():
            key_id, key = await issue_api_key(conn, principal.tenant_id, body.name,
                                              user_id=principal.user_id)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "key.issued", key_id, {"name": body.name})
        return IssuedKey(id=key_id, key=key)

    @router.delete("/staff/me/keys/{key_id}", status_code=204, responses=errors(401, 403, 404))
    async def revoke_key(key_id: uuid.UUID, principal: Principal = Depends(person)) -> Response:
        assert principal.user_id
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if not await repo.revoke_personal_key(conn, principal.user_id, key_id):
                raise not_found(ROUTE, "key")
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "key.revoked", key_id, {})
        return Response(status_code=204)

    return router
