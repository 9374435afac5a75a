"""The legacy callback `POST /api/webhook` (the guide's n8n "Webhook Callback Actions"), behind
`Authorization: Bearer <CRON_SECRET>`. Each action becomes one event:

  ai_response            conversation_id, content        -> OutboundMessage(sender_type ai);
                                                            the dispatcher stores and sends it
  update_lead_score      lead_id, score (0-100)          -> LeadScoreSet(source legacy)
  schedule_appointment   lead_id, branch_id, scheduled_at -> AppointmentRequested(source legacy)
  escalate_conversation  conversation_id, reason          -> ConversationEscalated(source legacy)

The guide's body names ids without their tenant; the tenant is the owner of the id (an optional
`tenant_id`, when sent, must match or the id is not found).

Idempotency: a retried callback publishes the same event id, which consumers drop as a
duplicate. The id is the tenant's `Idempotency-Key` when one is sent (scoped by tenant: two
tenants may pick the same key); without one it is the first id of the same action (same tenant,
same content) within `CALLBACK_DEDUP_WINDOW_HOURS` (24, table `callback_requests`), so that
n8n's retry of an ai_response reaches the patient once and the same text sent on purpose a day
later still goes.
The path has no channel segment, so it cannot clash with `/api/webhook/{channel}/{tenant_slug}`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from tistis_common import metrics
from tistis_common.db import tenant_tx
from tistis_common.events import (
    AppointmentRequested,
    Channel,
    ConversationEscalated,
    Event,
    LeadScoreSet,
    OutboundMessage,
)
from tistis_common.ids import stable_id
from tistis_common.logging import get_logger

from . import repository
from .auth import cron_secret
from .common import CleanStr, not_found, publish_or_503
from .problems import errors

if TYPE_CHECKING:
    import asyncpg

    from ..deps import Deps

log = get_logger(__name__)
ROUTE = "callback"


class _Action(BaseModel):
    # n8n workflows send extra fields (model, tokens, ...): accepted and ignored.
    model_config = ConfigDict(extra="ignore")
    tenant_id: uuid.UUID | None = None


class AiResponse(_Action):
    action: Literal["ai_response"]
    conversation_id: uuid.UUID
    content: CleanStr = Field(min_length=1, max_length=4096)
    model: CleanStr | None = None
    tokens: int | None = None


class UpdateLeadScore(_Action):
    action: Literal["update_lead_score"]
    lead_id: uuid.UUID
    score: int = Field(ge=0, le=100)
    reason: CleanStr | None = Field(None, max_length=1000)


class ScheduleAppointment(_Action):
    action: Literal["schedule_appointment"]
    lead_id: uuid.UUID
    branch_id: uuid.UUID
    scheduled_at: AwareDatetime
    service_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


class EscalateConversation(_Action):
    action: Literal["escalate_conversation"]
    conversation_id: uuid.UUID
    reason: CleanStr = Field(min_length=1, max_length=1000)


CallbackAction = Annotated[
    AiResponse | UpdateLeadScore | ScheduleAppointment | EscalateConversation,
    Field(discriminator="action"),
]


def callback_router(deps: Deps) -> APIRouter:
    pool, publisher = deps.pool, deps.publisher
    router = APIRouter(tags=["legacy callback"])

    window_seconds = deps.settings.callback_dedup_window_hours * 3600

    async def owner(body: _Action, kind: str, object_id: uuid.UUID) -> uuid.UUID:
        lookup = repository.tenant_of_conversation if kind == "conversation" else repository.tenant_of_lead
        tenant_id = await lookup(pool, object_id)
        if tenant_id is None or (body.tenant_id is not None and body.tenant_id != tenant_id):
            raise not_found(ROUTE, kind)
        return tenant_id

    @router.post("/api/webhook", status_code=202, dependencies=[Depends(cron_secret(deps.settings))],
                 responses=errors(401, 404, 422, 503))
    async def legacy_callback(
        body: CallbackAction = Body(...),
        idempotency_key: str | None = Header(None, max_length=200),
    ) -> dict:
        if isinstance(body, AiResponse | EscalateConversation):
            tenant_id = await owner(body, "conversation", body.conversation_id)
        else:
            tenant_id = await owner(body, "lead", body.lead_id)
        async with tenant_tx(pool, tenant_id) as conn:
            conv = await _checked(conn, body)
            if idempotency_key:
                event_id = stable_id("legacy-callback", tenant_id, body.action, idempotency_key)
            else:
                event_id = await repository.callback_event_id(
                    conn, tenant_id, _content_hash(body), uuid.uuid4(), window_seconds)
        event = _to_event(body, tenant_id, event_id, conv)
        await publish_or_503(publisher, [event], ROUTE)
        log.info("callback.accepted", action=body.action, tenant_id=str(event.tenant_id),
                 event_id=str(event.event_id))
        return {"status": "accepted", "action": body.action, "event_id": str(event.event_id)}

    return router


def _content_hash(body: _Action) -> str:
    """The action as validated (the tenant is the row's): a retry hashes alike."""
    return hashlib.sha256(body.model_dump_json(exclude={"tenant_id"}).encode()).hexdigest()


async def _checked(conn: asyncpg.Connection, body: _Action) -> asyncpg.Record | None:
    """The objects the action names, in the tenant's scope: 404 for one it does not hold; the
    conversation the action is about (None for a lead's action)."""
    if isinstance(body, AiResponse | EscalateConversation):
        conv = await repository.conversation(conn, body.conversation_id)
        if conv is None:
            raise not_found(ROUTE, "conversation")
        return conv
    if isinstance(body, ScheduleAppointment):
        if not await repository.branch_exists(conn, body.branch_id):
            raise not_found(ROUTE, "branch")
        if body.service_id is not None and not await repository.service_exists(conn, body.service_id):
            raise not_found(ROUTE, "service")
        if body.conversation_id is not None:
            # The booking's confirmation goes to this conversation: it must be the lead's.
            conv = await repository.conversation(conn, body.conversation_id)
            if conv is None:
                raise not_found(ROUTE, "conversation")
            if conv["lead_id"] != body.lead_id:
                metrics.API_REQUESTS.labels(ROUTE, "invalid").inc()
                raise HTTPException(422, "the conversation is not the lead's")
    return None


def _to_event(body: _Action, tenant_id: uuid.UUID, event_id: uuid.UUID,
              conv: asyncpg.Record | None) -> Event:
    if isinstance(body, AiResponse):
        assert conv is not None
        return OutboundMessage(
            event_id=event_id, tenant_id=tenant_id, channel=Channel(conv["channel"]),
            message_id=stable_id("legacy-ai-response", event_id),
            conversation_id=conv["id"], lead_id=conv["lead_id"],
            recipient_id=conv["platform_user_id"], sender_type="ai", purpose="reply",
            kind="text", text=body.content,
        )
    if isinstance(body, EscalateConversation):
        assert conv is not None
        return ConversationEscalated(
            event_id=event_id, tenant_id=tenant_id, conversation_id=conv["id"],
            lead_id=conv["lead_id"], channel=Channel(conv["channel"]), reason=body.reason,
            source="legacy",
        )
    if isinstance(body, UpdateLeadScore):
        return LeadScoreSet(event_id=event_id, tenant_id=tenant_id, lead_id=body.lead_id,
                            score=body.score, reason=body.reason, source="legacy")
    assert isinstance(body, ScheduleAppointment)
    return AppointmentRequested(
        event_id=event_id, tenant_id=tenant_id, action="book", lead_id=body.lead_id,
        conversation_id=body.conversation_id, branch_id=body.branch_id,
        service_id=body.service_id, scheduled_at=body.scheduled_at, source="legacy",
    )
