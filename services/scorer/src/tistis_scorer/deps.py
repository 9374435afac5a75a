"""What the scorer's handler needs, wired once in main."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.broker import Publisher
    from tistis_common.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    publisher: Publisher  # the runner publishes what the handler returns; kept for the shape
