"""What the ai-responder's handlers and service need, wired once in `main.start`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .context import ContextCache

if TYPE_CHECKING:
    import asyncpg
    import httpx
    from tistis_common.broker import Publisher
    from tistis_common.events import Event
    from tistis_common.settings import Settings
    from tistis_common.storage import MediaStore

    from .lease import Attempts
    from .locks import ConversationLocks
    from .model import ClaudeResponder


def _no_notice(event: Event) -> None:
    """Typing indicators go nowhere (a Deps built without a publisher of notices)."""


@dataclass(frozen=True)
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    publisher: Publisher
    locks: ConversationLocks  # a patient's messages are stored one at a time (`locks`)
    attempts: Attempts  # this process's replies being composed (`lease`)
    responder: ClaudeResponder | None  # None without ANTHROPIC_API_KEY: the fallback answers
    http: httpx.AsyncClient  # n8n as a tenant's provider
    notify: Callable[[Event], None] = _no_notice  # best-effort publish (typing indicators)
    contexts: ContextCache = field(default_factory=ContextCache)
    store: MediaStore | None = None  # the patients' files, shown to the model (`content`)
