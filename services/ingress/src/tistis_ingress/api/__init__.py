"""The operator side of the HTTP edge: operator API (tenant API keys), the legacy n8n callback
(CRON_SECRET) the realtime feed (server-sent events) and the inbox API
(staff sessions and personal keys). Each module exposes one router
factory that `main.build_app` includes."""

from .accounts import accounts_router
from .appointments import appointments_router
from .callback import callback_router
from .clinic import clinic_router
from .inbox import inbox_router
from .media import media_router
from .operator import operator_router
from .realtime import realtime_router
from .templates import templates_router

__all__ = ["accounts_router", "appointments_router", "callback_router", "clinic_router",
           "inbox_router", "media_router", "operator_router", "realtime_router", "templates_router"]
