"""The ai-responder's consumer entry points: each dispatches to `service`, which decides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

# Run-time imports: the runner reads each handler's event types from its annotation.
from tistis_common.events import (
    ConversationEscalated,
    ConversationReleased,
    Event,
    InboundMessage,
    OptOutChanged,
    ReplyDue,
    ReplyRequested,
)
from tistis_common.logging import bound

from . import service

if TYPE_CHECKING:
    from .deps import Deps


async def handle(event: InboundMessage | ReplyRequested, deps: Deps) -> Sequence[Event]:
    """`ai-responder.inbound` carries both patient messages and staff reply requests, in one
    order."""
    if isinstance(event, InboundMessage):
        return await service.take_inbound(deps, event)
    return await service.reply_requested(deps, event)


async def handle_reply_due(event: ReplyDue, deps: Deps) -> Sequence[Event]:
    """`ai-responder.replies`: a reply has come due (after the debounce, or at once)."""
    with bound(conversation_id=str(event.conversation_id)):
        return await service.respond(deps, event)


async def handle_state(event: OptOutChanged | ConversationEscalated | ConversationReleased,
                       deps: Deps) -> Sequence[Event]:
    """`ai-responder.state`: opt-outs, escalations and hand-backs."""
    return await service.apply_state_change(deps, event)
