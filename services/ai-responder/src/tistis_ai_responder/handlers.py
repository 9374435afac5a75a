"""The ai-responder's consumer entry points: each dispatches to `service`, which decides."""

from __future__ import annotations

from collections.abc import Sequence

from tistis_common.events import Event, InboundMessage, ReplyDue, ReplyRequested
from tistis_common.logging import bound, get_logger

from . import service
from .deps import Deps

log = get_logger(__name__)


async def handle(event: Event, deps: Deps) -> Sequence[Event]:
    """`ai-responder.inbound` carries both patient messages and staff reply requests, in one
    order."""
    if isinstance(event, InboundMessage):
        return await service.take_inbound(deps, event)
    if isinstance(event, ReplyRequested):
        return await service.reply_requested(deps, event)
    log.warning("event.ignored", event_type=getattr(event, "type", "?"))
    return []


async def handle_reply_due(event: Event, deps: Deps) -> Sequence[Event]:
    """`ai-responder.replies`: a reply has come due (after the debounce, or at once)."""
    if not isinstance(event, ReplyDue):
        log.warning("event.ignored", event_type=getattr(event, "type", "?"))
        return []
    with bound(conversation_id=str(event.conversation_id)):
        return await service.respond(deps, event)


async def handle_state(event: Event, deps: Deps) -> Sequence[Event]:
    """`ai-responder.state`: opt-outs, escalations and hand-backs."""
    return await service.apply_state_change(deps, event)
