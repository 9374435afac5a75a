"""What the operator API and the callback share: publishing with a clean 503, JSON-ready rows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import HTTPException
from pydantic import AfterValidator, BaseModel
from tistis_common import metrics
from tistis_common.broker import Publisher
from tistis_common.events import Event
from tistis_common.logging import get_logger

log = get_logger(__name__)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here (422) rather than fail downstream.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


CleanStr = Annotated[str, AfterValidator(_no_nul)]


class ErrorBody(BaseModel):
    detail: str


_DESCRIPTIONS = {
    401: "missing, wrong or revoked bearer credential",
    403: "authenticated, but not allowed to do this",
    404: "no such object in the caller's tenant",
    409: "not possible in the object's current state",
    429: "too many requests or login attempts; see Retry-After",
    503: "the broker did not confirm; try again",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the refusals a route can answer (the fuzzer holds us to them)."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


async def publish_or_503(publisher: Publisher, events: Sequence[Event], route: str) -> None:
    """Accepted means confirmed by the broker; anything else is 503 so that the caller retries."""
    try:
        await publisher.publish_all(events)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        log.error("api.publish_failed", route=route, error=repr(exc)[:300])
        metrics.API_REQUESTS.labels(route, "unavailable").inc()
        raise HTTPException(503, "could not queue the request, try again") from exc
    metrics.API_REQUESTS.labels(route, "ok").inc()


def not_found(route: str, what: str) -> HTTPException:
    metrics.API_REQUESTS.labels(route, "not_found").inc()
    return HTTPException(404, f"{what} not found")


def jsonable(row: Any) -> Any:
    if isinstance(row, dict) or hasattr(row, "items"):
        return {k: jsonable(v) for k, v in dict(row).items()}
    if isinstance(row, list | tuple):
        return [jsonable(v) for v in row]
    if isinstance(row, UUID):
        return str(row)
    if isinstance(row, datetime):
        return row.isoformat()
    if isinstance(row, Decimal):
        return float(row)
    return row
