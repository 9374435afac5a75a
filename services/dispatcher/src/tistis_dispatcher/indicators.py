"""While the AI composes a reply, the patient sees their message read and a reply being typed.

Best-effort: one attempt, never retried (a late indicator is worse than none), never in the way
of a send (its own queue, `dispatcher.typing`); a failure is counted and logged.
- WhatsApp: `{"messaging_product": "whatsapp", "status": "read", "message_id": <wamid>,
  "typing_indicator": {"type": "text"}}` (Meta, "Typing indicators": dismissed by the reply or
  after 25 s), https://developers.facebook.com/documentation/business-messaging/whatsapp/typing-indicators/
- Messenger and Instagram: `sender_action` `mark_seen`, then `typing_on` (Meta, "Sender
  Actions"), https://developers.facebook.com/docs/messenger-platform/send-messages/sender-actions
- TikTok: its Business Messaging API has neither (only message send); nothing is sent.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tistis_common import metrics
from tistis_common.db import tenant_session
from tistis_common.events import ReplyStarted
from tistis_common.logging import get_logger

from tistis_dispatcher import repository as repo
from tistis_dispatcher.platform import Account

if TYPE_CHECKING:
    from tistis_dispatcher.deps import Deps

log = get_logger(__name__)

# WhatsApp dismisses the indicator after 25 s: one that waited longer in the queue is dropped.
MAX_AGE_SECONDS = 20.0


def bodies(event: ReplyStarted) -> list[dict[str, Any]]:
    if event.channel == "whatsapp":
        if not event.platform_message_id:
            return []
        return [{"messaging_product": "whatsapp", "status": "read",
                 "message_id": event.platform_message_id, "typing_indicator": {"type": "text"}}]
    if event.channel in ("facebook", "instagram"):
        return [{"recipient": {"id": event.recipient_id}, "sender_action": action}
                for action in ("mark_seen", "typing_on")]
    return []


async def show_typing(event: ReplyStarted, deps: Deps) -> None:
    channel = event.channel.value
    calls = bodies(event)
    if not calls:
        metrics.TYPING.labels(channel, "unsupported").inc()
        return
    if (datetime.now(UTC) - event.occurred_at).total_seconds() > MAX_AGE_SECONDS:
        metrics.TYPING.labels(channel, "stale").inc()
        return
    try:
        async with tenant_session(deps.pool, event.tenant_id) as conn:
            row = await repo.conversation_account(conn, event.conversation_id)
        if row is None or not row.enabled:
            raise LookupError(f"no enabled {channel} connection")
        account = Account(
            connection_id=row.connection_id, channel=channel,
            platform_account_id=row.account_id,
            access_token=deps.secrets.open(row.access_token) or (
                deps.settings.whatsapp_access_token if channel == "whatsapp" else None),
            settings=row.connection_settings or {},
        )
        for body in calls:
            await deps.platform.post_graph(account, body)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        metrics.TYPING.labels(channel, "failed").inc()
        log.warning("typing.failed", channel=channel, error=repr(exc)[:300])
        return
    metrics.TYPING.labels(channel, "sent").inc()
