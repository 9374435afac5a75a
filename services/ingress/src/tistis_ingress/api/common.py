"""What the operator API and the callback share: publishing with a clean 503, JSON-ready rows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import HTTPException
from pydantic import AfterValidator
from tistis_common import metrics
from tistis_common.broker import Publisher
from tistis_common.events import Event
from tistis_common.logging import get_logger

log = get_logger(__name__)


def _storable(value: str) -> str:
    # Refused here (422) rather than failing downstream: PostgreSQL text cannot hold NUL, and a
    # lone surrogate (JSON allows "\ud800") cannot be encoded, so no event could carry it.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


CleanStr = Annotated[str, AfterValidator(_storable)]


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
