"""Per-tenant pacing of platform calls: a busy tenant waits for its own slots, not the others'."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class TokenBucket:
    """`rate` calls per second on average, bursts of `burst`; waiters are served in turn."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.capacity = max(1.0, burst)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class TenantLimiter:
    """Per tenant: at most `per_tenant` platform calls in flight and `rate` calls per second
    (0: no rate limit). One large tenant cannot take every connection nor every second of a
    channel's consumer; each tenant's platform rate limits are its own anyway."""

    def __init__(self, per_tenant: int, rate: float = 0.0):
        self.rate = rate
        self._semaphores: dict[Any, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(per_tenant)
        )
        self._buckets: dict[Any, TokenBucket] = defaultdict(lambda: TokenBucket(rate, rate))

    @asynccontextmanager
    async def slot(self, tenant_id: Any) -> AsyncIterator[None]:
        async with self._semaphores[tenant_id]:
            if self.rate > 0:
                await self._buckets[tenant_id].take()
            yield
