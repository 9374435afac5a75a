"""Operator API (the guide's `useIntegrations`), `Authorization: Bearer <tenant API key>`.

Every query runs in `tenant_tx` with the key's tenant, so RLS keeps a key inside its tenant: an
id of another tenant's object is simply not found (404). Writes are events, not rows:
  - send as an agent     -> OutboundMessage(sender_type agent, purpose agent); the dispatcher
                            stores the row (message_id) and sends it
  - ask the AI to answer -> ReplyRequested (ai-responder.inbound)
  - escalate / hand back -> ConversationEscalated(source api) / ConversationReleased; the AI
                            responder owns `conversations.status` and applies both
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from tistis_common.db import tenant_tx
from tistis_common.events import (
    Channel,
    ConversationEscalated,
    ConversationReleased,
    OutboundMessage,
    ReplyRequested,
    TemplateRef,
)
from tistis_common.ids import stable_id

from . import repository
from .auth import tenant_key
from .common import CleanStr, jsonable, not_found, publish_or_503
from .problems import errors

if TYPE_CHECKING:
    import asyncpg

    from ..deps import Deps

ROUTE = "operator"
WELCOME_TEMPLATE = "bienvenida_esva"  # the guide's welcome (patient_name)


class AgentMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: CleanStr = Field(min_length=1, max_length=4096)
    # Optional idempotency key: the same value sends the same message once.
    client_message_id: CleanStr | None = Field(None, min_length=1, max_length=200)


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: CleanStr = Field(min_length=1, max_length=1000)


class ReplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requested_by: CleanStr | None = Field(None, max_length=200)


def welcome(conv: asyncpg.Record) -> TemplateRef | None:
    """Staff writing first to a WhatsApp patient who never wrote: no window is open, so only a
    template may go; the dispatcher sends `bienvenida_esva` instead of the text then."""
    if conv["channel"] != "whatsapp" or conv["last_inbound_at"] is not None:
        return None
    return TemplateRef(name=WELCOME_TEMPLATE,
                       body_params=[(conv["lead_name"] or "").strip() or "paciente"])


def operator_router(deps: Deps) -> APIRouter:
    pool, publisher = deps.pool, deps.publisher
    router = APIRouter(prefix="/api/v1", tags=["operator"])
    tenant = Depends(tenant_key(pool))

    async def load_conversation(tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> asyncpg.Record:
        async with tenant_tx(pool, tenant_id) as conn:
            conv = await repository.conversation(conn, conversation_id)
        if conv is None:
            raise not_found(ROUTE, "conversation")
        return conv

    @router.get("/integrations", responses=errors(401))
    async def integrations(tenant_id: uuid.UUID = tenant) -> dict:
        """Per channel: configured, healthy, last error (what the dispatcher last recorded)."""
        async with tenant_tx(pool, tenant_id) as conn:
            return jsonable(await repository.integration_status(conn))

    @router.get("/leads", responses=errors(401))
    async def leads(
        tenant_id: uuid.UUID = tenant,
        band: Literal["hot", "warm", "cold"] | None = Query(None),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=1_000_000),
    ) -> dict:
        async with tenant_tx(pool, tenant_id) as conn:
            rows = await repository.leads(conn, band, limit, offset)
        return {"leads": jsonable(rows), "band": band, "limit": limit, "offset": offset}

    @router.get("/conversations/{conversation_id}", responses=errors(401, 404))
    async def conversation(
        conversation_id: uuid.UUID, tenant_id: uuid.UUID = tenant,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict:
        async with tenant_tx(pool, tenant_id) as conn:
            conv = await repository.conversation(conn, conversation_id)
            msgs = await repository.messages(conn, conversation_id, limit) if conv else []
        if conv is None:
            raise not_found(ROUTE, "conversation")
        return {"conversation": jsonable(conv), "messages": jsonable(msgs)}

    @router.post("/conversations/{conversation_id}/messages", status_code=202,
                 responses=errors(401, 404, 503))
    async def send_message(
        conversation_id: uuid.UUID, body: AgentMessage, tenant_id: uuid.UUID = tenant,
    ) -> dict:
        conv = await load_conversation(tenant_id, conversation_id)
        message_id = (
            stable_id("agent-message", tenant_id, body.client_message_id)
            if body.client_message_id else uuid.uuid4()
        )
        event = OutboundMessage(
            event_id=stable_id("agent-message-event", message_id), tenant_id=tenant_id,
            channel=Channel(conv["channel"]), message_id=message_id, conversation_id=conv["id"],
            lead_id=conv["lead_id"], recipient_id=conv["platform_user_id"], sender_type="agent",
            purpose="agent", kind="text", text=body.text, fallback_template=welcome(conv),
        )
        await publish_or_503(publisher, [event], ROUTE)
        return {"status": "queued", "message_id": str(message_id), "event_id": str(event.event_id)}

    @router.post("/conversations/{conversation_id}/ai-reply", status_code=202,
                 responses=errors(401, 404, 503))
    async def request_ai_reply(
        conversation_id: uuid.UUID, tenant_id: uuid.UUID = tenant,
        body: ReplyRequest | None = Body(None),
    ) -> dict:
        await load_conversation(tenant_id, conversation_id)
        event = ReplyRequested(tenant_id=tenant_id, conversation_id=conversation_id,
                               requested_by=(body and body.requested_by) or "api")
        await publish_or_503(publisher, [event], ROUTE)
        return {"status": "queued", "event_id": str(event.event_id)}

    @router.post("/conversations/{conversation_id}/escalate", status_code=202,
                 responses=errors(401, 404, 503))
    async def escalate(
        conversation_id: uuid.UUID, body: Escalation, tenant_id: uuid.UUID = tenant,
    ) -> dict:
        conv = await load_conversation(tenant_id, conversation_id)
        event = ConversationEscalated(
            tenant_id=tenant_id, conversation_id=conversation_id, lead_id=conv["lead_id"],
            channel=Channel(conv["channel"]), reason=body.reason, source="api",
        )
        await publish_or_503(publisher, [event], ROUTE)
        return {"status": "queued", "event_id": str(event.event_id)}

    @router.post("/conversations/{conversation_id}/release", status_code=202,
                 responses=errors(401, 404, 503))
    async def release(conversation_id: uuid.UUID, tenant_id: uuid.UUID = tenant) -> dict:
        await load_conversation(tenant_id, conversation_id)
        event = ConversationReleased(tenant_id=tenant_id, conversation_id=conversation_id)
        await publish_or_503(publisher, [event], ROUTE)
        return {"status": "queued", "event_id": str(event.event_id)}

    return router
