"""Consumer handlers of the AI responder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from tistis_common.db import tenant_tx
from tistis_common.events import Event, InboundMessage
from tistis_common.logging import get_logger

from . import repository as repo

log = get_logger(__name__)


@dataclass(frozen=True)
class Deps:
    pool: asyncpg.Pool


async def handle_inbound(event: InboundMessage, deps: Deps) -> Sequence[Event]:
    """Store lead, conversation and message, once per platform message id."""
    async with tenant_tx(deps.pool, event.tenant_id) as conn:
        lead_id = await repo.upsert_lead(conn, event)
        conversation = await repo.upsert_conversation(conn, event, lead_id)
        message_id = await repo.insert_inbound_message(conn, event, conversation["id"], lead_id)
        if message_id is None:
            log.info("message.duplicate", platform_message_id=event.platform_message_id)
            return []
        await repo.touch_conversation_inbound(conn, conversation["id"], event)
    log.info("message.stored", message_id=str(message_id), conversation_id=str(conversation["id"]),
             lead_id=str(lead_id), channel=event.channel.value)
    return []
