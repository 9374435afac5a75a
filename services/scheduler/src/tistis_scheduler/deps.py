"""What the scheduler's handlers and passes need, wired once in main."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.broker import Publisher
    from tistis_common.settings import Settings
    from tistis_common.storage import MediaStore


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    publisher: Publisher  # passes publish after their commit; consumers return their events
    # The scheduler's clock: tests pass their own to stand at any moment (DST edges, 24 h before).
    now: Callable[[], datetime] = utcnow
    store: MediaStore | None = None  # patient files: old ones deleted by retention
