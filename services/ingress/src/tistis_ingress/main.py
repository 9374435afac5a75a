"""tistis-ingress: the one HTTP edge."""

from __future__ import annotations

from fastapi import FastAPI
from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.storage import MediaStore, open_store
from tistis_common.topology import INGRESS_ITEMS, INGRESS_TEMPLATES

from .api import (
    accounts_router,
    appointments_router,
    callback_router,
    clinic_router,
    inbox_router,
    media_router,
    operator_router,
    problems,
    realtime_router,
    templates_router,
)
from .api.principal import stream_caller
from .api.templates import status_applier
from .directory import Directory
from .fastpath import WebhookFastPath
from .web import pages_router
from .webhooks import WebhookIntake, webhook_router

NAME = "ingress"


def build_app(runtime: Runtime, intake: WebhookIntake, store: MediaStore) -> FastAPI:
    assert runtime.pool and runtime.publisher
    app = FastAPI(title="TIS TIS ingress", version="0.1.0")
    problems.install(app)
    app.include_router(webhook_router(intake))
    app.add_middleware(WebhookFastPath, intake=intake)
    app.include_router(callback_router(runtime))
    app.include_router(operator_router(runtime))
    app.include_router(media_router(runtime, store))
    app.include_router(appointments_router(runtime))
    app.include_router(realtime_router(runtime, stream_caller(runtime.pool, runtime.settings)))
    app.include_router(accounts_router(runtime.pool, runtime.settings))
    app.include_router(inbox_router(runtime.pool, runtime.publisher, runtime.settings))
    app.include_router(clinic_router(runtime.pool, runtime.publisher, runtime.settings))
    app.include_router(templates_router(runtime))
    app.include_router(pages_router(runtime.pool))
    return app


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool and runtime.publisher
    intake = WebhookIntake(runtime.settings, Directory(runtime.pool, runtime.secrets), runtime.publisher)
    # Held webhook items an engineer replayed (`tistis dlq replay ingress.webhook-items.dlq`).
    runtime.consume(INGRESS_ITEMS, intake.replay)  # type: ignore[arg-type]
    # WhatsApp template approvals the webhook published (api/templates.py).
    runtime.consume(INGRESS_TEMPLATES, status_applier(runtime.pool))  # type: ignore[arg-type]
    await runtime.start_consumers()
    store = await open_store(settings)
    runtime.close_at_stop(store.close)
    await runtime.serve_http(build_app(runtime, intake, store))
    return runtime


def cli() -> None:
    serve(NAME, start)
