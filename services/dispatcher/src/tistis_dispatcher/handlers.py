"""Every consumer of the dispatcher: one per channel's outbound queue, the platform statuses,
the patients' files and the typing indicators. Each dispatches to the module that decides
(`service` for sends and statuses, `media` for files, `indicators` for typing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tistis_common.events import Event, InboundMessage, MessageStatus, OutboundMessage, ReplyStarted
from tistis_common.logging import bound
from tistis_common.tenant_labels import TENANT_LABELS

from tistis_dispatcher import indicators, media, service

if TYPE_CHECKING:
    from tistis_dispatcher.deps import Deps


async def handle_outbound(event: OutboundMessage, deps: Deps) -> Sequence[Event]:
    await TENANT_LABELS.load(deps.pool, event.tenant_id)
    with bound(message_id=str(event.message_id), channel=event.channel.value,
               purpose=event.purpose):
        # A redelivery waits for the live attempt at the same message (Attempts.run).
        await deps.attempts.run(event.message_id,
                                lambda attempt: service.send(event, deps, attempt))
    return []


async def handle_status(event: MessageStatus, deps: Deps) -> Sequence[Event]:
    await TENANT_LABELS.load(deps.pool, event.tenant_id)
    await service.apply_status(event, deps)
    return []


async def handle_media(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    with bound(channel=event.channel.value, platform_message_id=event.platform_message_id,
               kind=event.kind):
        return await media.keep_media(event, deps)


async def handle_reply_started(event: ReplyStarted, deps: Deps) -> Sequence[Event]:
    await indicators.show_typing(event, deps)
    return []
