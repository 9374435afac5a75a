"""State changes that are not patient messages: marketing opt-outs, and escalations or
hand-backs decided by staff (operator API) or the legacy callback. The ai-responder owns leads
and conversations, so it applies them; each is idempotent (setting a state twice is one state)."""

from __future__ import annotations

from collections.abc import Sequence

from tistis_common.db import tenant_tx
from tistis_common.events import (
    ConversationEscalated,
    ConversationReleased,
    Event,
    OptOutChanged,
)
from tistis_common.logging import get_logger

from . import repository as repo
from .handlers import Deps

log = get_logger(__name__)


async def handle_state(event: Event, deps: Deps) -> Sequence[Event]:
    async with tenant_tx(deps.engine.pool, event.tenant_id) as conn:
        if isinstance(event, OptOutChanged):
            found = await repo.set_opted_out(conn, event.channel.value, event.platform_user_id,
                                             event.opted_out, event.changed_at)
            log.info("lead.opt_out_changed", opted_out=event.opted_out, known_lead=found)
        elif isinstance(event, ConversationEscalated):
            # Our own escalations arrive here too: the conversation is already escalated.
            await repo.escalate_conversation(conn, event.conversation_id, event.reason)
        elif isinstance(event, ConversationReleased):
            await repo.release_conversation(conn, event.conversation_id)
            log.info("conversation.released", conversation_id=str(event.conversation_id))
    return []
