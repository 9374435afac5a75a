"""Rate limits that hold across ingress replicas: fixed-window counters in PostgreSQL, one
upsert per request (`rate_limits`, migration 1200; the SQL is in `staff_repository.py`). Over
the limit is 429 with Retry-After."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import tistis_common.metrics as metrics
from fastapi import HTTPException

from . import staff_repository as repo

if TYPE_CHECKING:
    import asyncpg


async def hit(pool: asyncpg.Pool, bucket: str, limit: int, window_seconds: int) -> int:
    """Counts one hit; the seconds to wait when it is over the limit, else 0."""
    now = time.time()
    start = int(now // window_seconds) * window_seconds
    hits = await repo.count_hit(pool, bucket, start)
    if random.random() < 0.001:  # old windows go now and then, not on every request
        await repo.forget_old_windows(pool)
    return 0 if hits <= limit else max(1, int(start + window_seconds - now) + 1)


async def enforce(pool: asyncpg.Pool, bucket: str, limit: int, window_seconds: int,
                  route: str) -> None:
    wait = await hit(pool, bucket, limit, window_seconds)
    if wait:
        metrics.API_REQUESTS.labels(route, "rate_limited").inc()
        raise HTTPException(429, "too many requests, slow down", headers={"Retry-After": str(wait)})
