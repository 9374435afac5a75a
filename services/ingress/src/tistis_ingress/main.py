"""tistis-ingress: the one HTTP edge."""

from __future__ import annotations

from fastapi import FastAPI
from tistis_common.runtime import Runtime, serve
from tistis_common.settings import Settings
from tistis_common.topology import INGRESS_ITEMS

from .api import callback_router, operator_router, problems, realtime_router
from .directory import Directory
from .fastpath import WebhookFastPath
from .webhooks import WebhookIntake, webhook_router

NAME = "ingress"


def build_app(runtime: Runtime, intake: WebhookIntake) -> FastAPI:
    app = FastAPI(title="TIS TIS ingress", version="0.1.0")
    problems.install(app)
    app.include_router(webhook_router(intake))
    app.add_middleware(WebhookFastPath, intake=intake)
    app.include_router(callback_router(runtime))
    app.include_router(operator_router(runtime))
    app.include_router(realtime_router(runtime))
    return app


async def start(settings: Settings) -> Runtime:
    runtime = Runtime(settings, NAME)
    await runtime.start()
    assert runtime.pool and runtime.publisher
    intake = WebhookIntake(runtime.settings, Directory(runtime.pool, runtime.secrets), runtime.publisher)
    # Held webhook items an engineer replayed (`tistis dlq replay ingress.webhook-items.dlq`).
    runtime.consume(INGRESS_ITEMS, intake.replay)  # type: ignore[arg-type]
    await runtime.start_consumers()
    await runtime.serve_http(build_app(runtime, intake))
    return runtime


def cli() -> None:
    serve(NAME, start)
