"""What the scheduler's handlers and passes need, wired once in main."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from tistis_common.broker import Publisher
from tistis_common.settings import Settings
from tistis_common.storage import MediaStore


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool
    settings: Settings
    # The scheduler's clock: tests pass their own to stand at any moment (DST edges, 24 h before).
    now: Callable[[], datetime] = utcnow
    publisher: Publisher | None = None  # passes publish after their commit; handlers return events
    store: MediaStore | None = None  # patient files: old ones deleted by retention
