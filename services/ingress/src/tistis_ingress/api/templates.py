"""The tenant's WhatsApp message templates and their approval status, as the WhatsApp Business
Management API reports them: `GET /{version}/{waba-id}/message_templates` (fields name,
language, status, category, components, id; paged by `paging.next`), per WhatsApp connection
whose settings name its `business_account_id`. Synced when the ingress starts, every
`inbox_template_sync_seconds`, and on demand (an admin's POST /api/v1/inbox/templates/sync); between syncs the
`message_template_status_update` webhook moves a template's status: the webhook pipeline
publishes a TemplateStatusChanged for the tenant whose connection names the WABA
(channels/whatsapp.py), and `apply_status` stores it from `ingress.template-status`.

Source: Meta, "Template management", https://developers.facebook.com/documentation/
business-messaging/whatsapp/templates/template-management/ (Get templates).
The HTTP calls run with no database connection held."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Depends, HTTPException
from tistis_common.db import tenant_ids, tenant_tx
from tistis_common.events import TemplateStatusChanged
from tistis_common.logging import get_logger
from tistis_common.settings import Settings

from . import staff_repository as repo
from .inbox_models import Template, TemplateList
from .principal import Principal, staff
from .problems import errors

if TYPE_CHECKING:
    import asyncpg

    from ..deps import Deps

log = get_logger(__name__)
FIRST_SYNC_AFTER = 2.0  # seconds: the service is up and serving first
ROUTE = "inbox.templates"
FIELDS = "id,name,language,status,category,components"
_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")


def parse(item: dict[str, Any]) -> dict[str, Any] | None:
    """One `data` item as a row; None when it lacks what a send needs."""
    try:
        body = next((c.get("text") for c in item.get("components", [])
                     if str(c.get("type", "")).upper() == "BODY"), None)
        numbers = [int(n) for n in _PLACEHOLDER.findall(body or "")]
        return {"template_id": str(item["id"]), "name": str(item["name"]),
                "language": str(item["language"]), "category": item.get("category"),
                "status": str(item["status"]).upper(), "body": body,
                "params": max(numbers, default=0)}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


async def fetch(http: httpx.AsyncClient, settings: Settings, waba_id: str,
                token: str) -> list[dict[str, Any]]:
    url: str | None = (f"{settings.graph_api_base_url.rstrip('/')}/{settings.graph_api_version}"
                       f"/{waba_id}/message_templates")
    params: dict[str, Any] | None = {"fields": FIELDS, "limit": 100}
    found: list[dict[str, Any]] = []
    for _ in range(50):  # a bounded walk over the pages
        if url is None:
            break
        answer = await http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        page = answer.json()
        found += [row for item in page.get("data", []) if (row := parse(item))]
        url, params = page.get("paging", {}).get("next"), None  # `next` carries its own query
    return found


async def sync_tenant(pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings,
                      tenant_id: uuid.UUID) -> int:
    async with tenant_tx(pool, tenant_id) as conn:
        accounts = await repo.template_accounts(conn)
    rows: list[dict[str, Any]] = []
    for account in accounts:
        rows += await fetch(http, settings, account["waba_id"], account["access_token"])
    if rows:
        async with tenant_tx(pool, tenant_id) as conn:
            for row in rows:
                await repo.upsert_template(conn, tenant_id, row)
    if rows:
        log.info("templates.synced", tenant_id=str(tenant_id), templates=len(rows))
    return len(rows)


async def sync_loop(pool: asyncpg.Pool, settings: Settings, stopping: asyncio.Event) -> None:
    """Every tenant's templates, shortly after the start and then every
    `inbox_template_sync_seconds`; a failing tenant is logged and tried again next round."""
    async with httpx.AsyncClient(timeout=settings.dispatcher_http_timeout_seconds) as http:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=FIRST_SYNC_AFTER)
        except TimeoutError:
            pass
        while not stopping.is_set():
            for tenant_id in await tenant_ids(pool):
                try:
                    await sync_tenant(pool, http, settings, tenant_id)
                except (httpx.HTTPError, ValueError, repo.QUERY_FAILED) as exc:
                    log.warning("templates.sync_failed", tenant_id=str(tenant_id),
                                error=repr(exc)[:300])
            try:
                await asyncio.wait_for(stopping.wait(), timeout=settings.inbox_template_sync_seconds)
            except TimeoutError:
                pass


async def apply_template_status(event: TemplateStatusChanged, pool: asyncpg.Pool) -> None:
    """A template's new status (Meta's `message_template_status_update`), in its tenant."""
    async with tenant_tx(pool, event.tenant_id) as conn:
        moved = await repo.set_template_status(conn, event.template_id, event.status,
                                               event.changed_at)
    # an unknown template (created since the last sync) arrives with the next sync
    log.info("templates.status_changed", tenant_id=str(event.tenant_id),
             template_id=event.template_id, status=event.status, reason=event.reason,
             applied=moved)


def templates_router(deps: Deps) -> APIRouter:
    """The templates a conversation may use, and an admin's sync now (the periodic sync,
    `sync_loop`, is started by `main.start`)."""
    pool, settings = deps.pool, deps.settings
    router = APIRouter(prefix="/api/v1/inbox", tags=["inbox"])
    who = Depends(staff(pool, settings, ROUTE))

    @router.get("/templates", response_model=TemplateList, responses=errors(401, 429))
    async def templates(principal: Principal = who) -> TemplateList:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await repo.templates(conn)
        return TemplateList(templates=[Template(**dict(r)) for r in rows])

    @router.post("/templates/sync", response_model=TemplateList,
                 responses=errors(401, 403, 429, 503))
    async def sync_now(principal: Principal = who) -> TemplateList:
        if not principal.is_admin:
            raise HTTPException(403, "only an admin may do this")
        try:
            async with httpx.AsyncClient(timeout=settings.dispatcher_http_timeout_seconds) as http:
                await sync_tenant(pool, http, settings, principal.tenant_id)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("templates.sync_failed", tenant_id=str(principal.tenant_id),
                        error=repr(exc)[:300])
            raise HTTPException(503, "the WhatsApp Business Management API did not answer") from exc
        return await templates(principal)

    return router
