"""tistis-ingress: the one HTTP edge. The only bootstrap: builds the one `Deps`, registers the
consumers, background loops and routes."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.storage import open_store
from tistis_common.topology import INGRESS_ITEMS, INGRESS_TEMPLATES

from . import handlers
from .api import (
    accounts_router,
    appointments_router,
    callback_router,
    clinic_router,
    inbox_router,
    media_router,
    operator_router,
    problems,
    realtime,
    realtime_router,
    templates_router,
)
from .api.principal import stream_caller
from .api.templates import sync_loop
from .deps import Deps
from .directory import Directory
from .service import WebhookIntake
from .web import pages_router

NAME = "ingress"


def build_app(deps: Deps, intake: WebhookIntake) -> FastAPI:
    app = FastAPI(title="TIS TIS ingress", version="0.1.0")
    problems.install(app)
    app.include_router(handlers.webhook_router(intake))
    # Takes the webhook POSTs before FastAPI's routing: see handlers.py's two doors.
    app.add_middleware(handlers.WebhookFastPath, intake=intake)
    app.include_router(callback_router(deps))
    app.include_router(operator_router(deps))
    app.include_router(media_router(deps))
    app.include_router(appointments_router(deps))
    app.include_router(realtime_router(deps, stream_caller(deps.pool, deps.settings)))
    app.include_router(accounts_router(deps))
    app.include_router(inbox_router(deps))
    app.include_router(clinic_router(deps))
    app.include_router(templates_router(deps))
    app.include_router(pages_router(deps))
    return app


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool and runtime.publisher and runtime.connection
    store = await open_store(settings)
    runtime.close_at_stop(store.close)
    deps = Deps(settings, runtime.pool, runtime.publisher,
                directory=Directory(runtime.pool, runtime.secrets), store=store,
                feed=realtime.RealtimeFeed(runtime.connection), stopping=runtime.stopping)
    intake = WebhookIntake(deps)
    # Held webhook items an engineer replayed (`tistis dlq replay ingress.webhook-items.dlq`).
    runtime.consume(INGRESS_ITEMS, partial(handlers.handle_held_items, intake=intake))
    # WhatsApp template approvals the webhook published (api/templates.py).
    runtime.consume(INGRESS_TEMPLATES, partial(handlers.handle_template_status, deps=deps))
    await runtime.start_consumers()
    runtime.background(deps.feed.run)
    if settings.inbox_template_sync_seconds > 0:
        runtime.background(lambda stopping: sync_loop(deps.pool, settings, stopping))
    await runtime.serve_http(build_app(deps, intake))
    return runtime


def cli() -> None:
    serve(NAME, start)
