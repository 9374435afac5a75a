"""What the ingress's handlers and routers are built with: one `Deps`, built by `main.start`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    import asyncpg
    from tistis_common.broker import Publisher
    from tistis_common.settings import Settings
    from tistis_common.storage import MediaStore

    from .api.realtime import RealtimeFeed
    from .directory import Directory


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    publisher: Publisher
    directory: Directory  # tenants and channel connections of the webhook path, cached briefly
    store: MediaStore  # patient files (api/media.py)
    feed: RealtimeFeed  # the realtime streams' one broker consumer (api/realtime.py)
    stopping: asyncio.Event  # set when the service stops: open streams end
