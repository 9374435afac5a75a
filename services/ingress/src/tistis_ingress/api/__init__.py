"""The operator side of the HTTP edge: operator API (tenant API keys), the legacy n8n callback
(CRON_SECRET) and the realtime feed (server-sent events). Each module exposes one router
factory that `main.build_app` includes."""

from .appointments import appointments_router
from .callback import callback_router
from .media import media_router
from .operator import operator_router
from .realtime import realtime_router

__all__ = ["appointments_router", "callback_router", "media_router", "operator_router", "realtime_router"]
