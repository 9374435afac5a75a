"""What the dispatcher's handlers need, built once in `main.start`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tistis_dispatcher.attempts import Attempts

if TYPE_CHECKING:
    import asyncpg
    from tistis_common.broker import Publisher
    from tistis_common.secrets import SecretBox
    from tistis_common.settings import Settings
    from tistis_common.storage import MediaStore

    from tistis_dispatcher.limiter import TenantLimiter
    from tistis_dispatcher.platform import PlatformClient
    from tistis_dispatcher.transcription import Transcriber


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    publisher: Publisher
    platform: PlatformClient  # the one HTTP client of the service, for every platform
    secrets: SecretBox  # opens the stored tokens (built once, not per call)
    limiter: TenantLimiter  # platform calls in flight and per second, per tenant
    store: MediaStore  # our files: media messages sent by upload, patients' files kept
    transcriber: Transcriber | None  # voice notes; None without TRANSCRIPTION_BASE_URL
    claimer: int  # this process's lease key (tistis_dispatcher.lease)
    attempts: Attempts = field(default_factory=Attempts)  # this process's sends in flight
