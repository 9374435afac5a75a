"""GET /inbox: the login page, or the inbox itself for a live session; its two static files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from tistis_common.db import tenant_tx

from ..api import staff_repository as repo
from ..api.principal import SESSION_COOKIE, resolve, token_hash
from .strings import STRINGS

if TYPE_CHECKING:
    from ..deps import Deps

HERE = Path(__file__).parent
STATIC = {"inbox.js": "text/javascript", "inbox.css": "text/css"}
# The page loads only its own script and style; nothing inline can run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def pages_router(deps: Deps) -> APIRouter:
    pool = deps.pool
    router = APIRouter(include_in_schema=False)
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))

    def page(name: str, lang: str, **context: object) -> HTMLResponse:
        html = env.get_template(name).render(lang=lang, t=STRINGS[lang], strings=STRINGS[lang],
                                             **context)
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP,
                                           "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "same-origin",
                                           "Cache-Control": "no-store"})

    @router.get("/inbox")
    async def inbox(request: Request, lang: str | None = Query(None, max_length=5)) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        principal = await resolve(pool, "session", token_hash(token)) if token and len(token) < 200 else None
        if principal is None:
            chosen = lang if lang in STRINGS else "es"
            return page("login.html", chosen)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            user = await repo.user(conn, principal.user_id) if principal.user_id else None
        chosen = lang if lang in STRINGS else (user["language"] if user else "es")
        return page("app.html", chosen)

    @router.get("/inbox/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return router
