"""The inbox API: conversations found, read, taken, answered and handed back by staff.

Conversations are listed newest activity first with keyset cursors; filters are the inbox's
tabs (needs a human, AI handling, mine, unassigned, closed), plus channel, branch (a lead with
an appointment there) and a search over patient name, phone and message text. The inbox keeps
its own state per conversation (`inbox_conversations`: assignee, seen, closed, labels);
`conversations.status` stays the AI responder's, so taking over and handing back are events
(ConversationEscalated source agent / ConversationReleased), and staff messages are
OutboundMessage commands the dispatcher stores and sends (Messenger and Instagram: with the
HUMAN_AGENT tag within 7 days, WhatsApp: a template outside 24 h, see the dispatcher's rules).
Every action is written to `staff_actions` with who did it."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from tistis_common import metrics
from tistis_common.db import tenant_tx
from tistis_common.events import (
    Channel,
    ConversationEscalated,
    ConversationReleased,
    Event,
    OutboundMessage,
    TemplateRef,
)
from tistis_common.ids import stable_id

from . import repository
from . import staff_repository as repo
from .common import not_found, publish_or_503
from .inbox_models import (
    Action,
    Assign,
    CannedReply,
    CannedReplyList,
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    Filter,
    Labels,
    Message,
    NewCannedReply,
    NewNote,
    Note,
    Outreach,
    Queued,
    Reply,
    TemplateSend,
    UnreadCounts,
)
from .principal import Principal, staff
from .problems import errors

if TYPE_CHECKING:
    from ..deps import Deps

ROUTE = "inbox"
TAKEN_REASON = "taken by staff"


def window_open(row: Any, tiktok_hours: float, now: datetime | None = None) -> bool:
    """Whether free text from staff may go now (the dispatcher's rules decide for real)."""
    last = row["last_inbound_at"]
    if last is None:
        return False
    hours = {"whatsapp": 24.0, "tiktok": tiktok_hours}.get(row["channel"], 24.0 * 7)
    return (now or datetime.now(UTC)) - last <= timedelta(hours=hours)


def encode_cursor(activity: datetime, conversation_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{activity.isoformat()}|{conversation_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, _, cid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), uuid.UUID(cid)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPException(400, "malformed cursor") from exc


def render(body: str | None, params: list[str]) -> str:
    text = body or ""
    for n, value in enumerate(params, start=1):
        text = text.replace(f"{{{{{n}}}}}", value)
    return text


def inbox_router(deps: Deps) -> APIRouter:
    pool, publisher, settings = deps.pool, deps.publisher, deps.settings
    router = APIRouter(prefix="/api/v1/inbox", tags=["inbox"])
    who = Depends(staff(pool, settings, ROUTE))

    def summary(row: Any) -> ConversationSummary:
        return ConversationSummary(**dict(row),
                                   window_open=window_open(row, settings.tiktok_window_hours))

    async def load(principal: Principal, conversation_id: uuid.UUID) -> ConversationSummary:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await repo.list_conversations(
                conn, me=principal.user_id, filter="all", channel=None, branch_id=None,
                lead_id=None, search=None, after=None, limit=1, conversation_id=conversation_id)
        if not rows:
            raise not_found(ROUTE, "conversation")
        return summary(rows[0])

    async def record(principal: Principal, action: str, object_id: uuid.UUID | None,
                     detail: dict[str, Any] | None = None) -> None:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, action, object_id, detail or {})

    def take_events(principal: Principal, conv: ConversationSummary) -> list[Event]:
        """A conversation the AI is handling stops being the AI's once staff take it."""
        if conv.status != "active":
            return []
        return [ConversationEscalated(
            tenant_id=principal.tenant_id, conversation_id=conv.id, lead_id=conv.lead_id,
            channel=Channel(conv.channel), reason=TAKEN_REASON, source="agent")]

    async def send(principal: Principal, conv: ConversationSummary, client_id: str | None,
                   **fields: Any) -> Queued:
        message_id = (stable_id("inbox-message", principal.tenant_id, client_id) if client_id
                      else uuid.uuid4())
        outbound = OutboundMessage(
            event_id=stable_id("inbox-message-event", message_id), tenant_id=principal.tenant_id,
            channel=Channel(conv.channel), message_id=message_id, conversation_id=conv.id,
            lead_id=conv.lead_id, recipient_id=conv.platform_user_id, sender_type="agent",
            purpose="agent", **fields)
        # Answering an unassigned conversation takes it (the AI stops talking over staff).
        taking = conv.assigned_to is None and principal.user_id is not None
        await publish_or_503(
            publisher, [*(take_events(principal, conv) if taking else []), outbound], ROUTE)
        if taking:
            async with tenant_tx(pool, principal.tenant_id) as conn:
                await repo.set_assignee(conn, principal.tenant_id, conv.id, principal.user_id)
        await record(principal, "message.sent", conv.id,
                     {"message_id": str(message_id), "kind": fields.get("kind", "text")})
        return Queued(status="queued", event_id=outbound.event_id, message_id=message_id)

    @router.get("/conversations", response_model=ConversationPage,
                responses=errors(400, 401, 429))
    async def conversations(
        principal: Principal = who,
        filter: Filter = Query("open"),
        channel: Channel | None = Query(None),
        branch_id: uuid.UUID | None = Query(None),
        lead_id: uuid.UUID | None = Query(None),
        q: str | None = Query(None, min_length=1, max_length=200),
        cursor: str | None = Query(None, max_length=200),
        limit: int = Query(30, ge=1, le=100),
    ) -> ConversationPage:
        if q and "\x00" in q:
            raise HTTPException(400, "search must not contain NUL")
        after = decode_cursor(cursor) if cursor else None
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await repo.list_conversations(
                conn, me=principal.user_id, filter=filter, channel=channel.value if channel else None,
                branch_id=branch_id, lead_id=lead_id, search=q, after=after, limit=limit + 1)
            counts = await repo.unread_counts(conn, principal.user_id)
        page = rows[:limit]
        more = len(rows) > limit
        return ConversationPage(
            conversations=[summary(r) for r in page],
            next_cursor=encode_cursor(page[-1]["activity"], page[-1]["id"]) if more else None,
            unread=UnreadCounts(**dict(counts)))

    @router.get("/conversations/{conversation_id}", response_model=ConversationDetail,
                responses=errors(401, 404, 429))
    async def conversation(conversation_id: uuid.UUID, principal: Principal = who,
                           limit: int = Query(200, ge=1, le=1000)) -> ConversationDetail:
        conv = await load(principal, conversation_id)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            messages = await repository.messages(conn, conversation_id, limit)
            notes = await repo.notes(conn, conversation_id)
            actions = await repo.actions(conn, conversation_id)
        return ConversationDetail(conversation=conv, messages=[Message(**dict(m)) for m in messages],
                                  notes=[Note(**dict(n)) for n in notes],
                                  actions=[Action(**dict(a)) for a in actions])

    @router.post("/conversations/{conversation_id}/seen", response_model=Queued,
                 responses=errors(401, 404, 429))
    async def seen(conversation_id: uuid.UUID, principal: Principal = who) -> Queued:
        await load(principal, conversation_id)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.mark_seen(conn, principal.tenant_id, conversation_id)
        return Queued(status="done")

    @router.post("/conversations/{conversation_id}/take", response_model=Queued,
                 responses=errors(401, 403, 404, 429, 503))
    async def take(conversation_id: uuid.UUID, principal: Principal = who) -> Queued:
        if principal.user_id is None:
            raise HTTPException(403, "a tenant key is nobody: assign to a user instead")
        conv = await load(principal, conversation_id)
        events = take_events(principal, conv)
        if events:
            await publish_or_503(publisher, events, ROUTE)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.set_assignee(conn, principal.tenant_id, conversation_id, principal.user_id)
            await repo.set_closed(conn, principal.tenant_id, conversation_id, False)
        await record(principal, "conversation.taken", conversation_id)
        return Queued(status="queued" if events else "done",
                      event_id=events[0].event_id if events else None)

    @router.post("/conversations/{conversation_id}/assign", response_model=Queued,
                 responses=errors(401, 404, 429))
    async def assign(conversation_id: uuid.UUID, body: Assign, principal: Principal = who) -> Queued:
        await load(principal, conversation_id)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if body.user_id is not None:
                user = await repo.user(conn, body.user_id)
                if user is None or user["disabled_at"] is not None:
                    raise not_found(ROUTE, "user")
            await repo.set_assignee(conn, principal.tenant_id, conversation_id, body.user_id)
        await record(principal, "conversation.assigned" if body.user_id else "conversation.unassigned",
                     conversation_id, {"user_id": str(body.user_id) if body.user_id else None})
        return Queued(status="done")

    @router.post("/conversations/{conversation_id}/close", response_model=Queued,
                 responses=errors(401, 404, 429))
    async def close(conversation_id: uuid.UUID, principal: Principal = who) -> Queued:
        return await _closed(conversation_id, principal, True)

    @router.post("/conversations/{conversation_id}/reopen", response_model=Queued,
                 responses=errors(401, 404, 429))
    async def reopen(conversation_id: uuid.UUID, principal: Principal = who) -> Queued:
        return await _closed(conversation_id, principal, False)

    async def _closed(conversation_id: uuid.UUID, principal: Principal, closed: bool) -> Queued:
        await load(principal, conversation_id)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.set_closed(conn, principal.tenant_id, conversation_id, closed)
        await record(principal, "conversation.closed" if closed else "conversation.reopened",
                     conversation_id)
        return Queued(status="done")

    @router.post("/conversations/{conversation_id}/handback", response_model=Queued,
                 responses=errors(401, 404, 429, 503))
    async def hand_back(conversation_id: uuid.UUID, principal: Principal = who) -> Queued:
        """Back to the AI in one action: released, unassigned."""
        await load(principal, conversation_id)
        event = ConversationReleased(tenant_id=principal.tenant_id, conversation_id=conversation_id)
        await publish_or_503(publisher, [event], ROUTE)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.set_assignee(conn, principal.tenant_id, conversation_id, None)
        await record(principal, "conversation.handed_back", conversation_id)
        return Queued(status="queued", event_id=event.event_id)

    @router.post("/conversations/{conversation_id}/reply", status_code=202, response_model=Queued,
                 responses=errors(401, 404, 409, 429, 503))
    async def reply(conversation_id: uuid.UUID, body: Reply, principal: Principal = who) -> Queued:
        conv = await load(principal, conversation_id)
        if not conv.window_open:
            metrics.API_REQUESTS.labels(ROUTE, "conflict").inc()
            raise HTTPException(409, "the messaging window is closed: send an approved template")
        return await send(principal, conv, body.client_message_id, kind="text", text=body.text)

    @router.post("/conversations/{conversation_id}/template", status_code=202,
                 response_model=Queued, responses=errors(401, 404, 409, 429, 503))
    async def template(conversation_id: uuid.UUID, body: TemplateSend,
                       principal: Principal = who) -> Queued:
        return await _template(await load(principal, conversation_id), body, principal)

    async def _template(conv: ConversationSummary, body: TemplateSend,
                        principal: Principal) -> Queued:
        if conv.channel != "whatsapp":
            raise HTTPException(409, "templates are WhatsApp's; Messenger uses HUMAN_AGENT")
        async with tenant_tx(pool, principal.tenant_id) as conn:
            found = await repo.template(conn, body.name, body.language)
        if found is None:
            raise not_found(ROUTE, "template")
        if found["status"] != "APPROVED":
            raise HTTPException(409, f"template not approved ({found['status']})")
        if len(body.params) != found["params"]:
            raise HTTPException(409, f"the template takes {found['params']} parameters")
        ref = TemplateRef(name=body.name, language=body.language, body_params=list(body.params))
        return await send(principal, conv, body.client_message_id, kind="template", template=ref,
                          text=render(found["body"], list(body.params)))

    @router.post("/outreach", status_code=202, response_model=Queued,
                 responses=errors(401, 404, 409, 429, 503))
    async def outreach(body: Outreach, principal: Principal = who) -> Queued:
        """A new WhatsApp number, written to first with an approved template. The lead and its
        conversation are created here (the AI responder's upsert on the same keys adopts them
        when the patient answers), marked as staff-handled and assigned to the sender."""
        wa_id = "".join(ch for ch in body.phone if ch.isdigit())
        async with tenant_tx(pool, principal.tenant_id) as conn:
            account = await repo.whatsapp_account(conn)
            if account is None:
                raise not_found(ROUTE, "WhatsApp connection")
            conversation_id = await repo.open_outreach(conn, principal.tenant_id, wa_id,
                                                       body.name, account)
        conv = await load(principal, conversation_id)
        return await _template(conv, body.template, principal)

    @router.post("/conversations/{conversation_id}/notes", status_code=201, response_model=Note,
                 responses=errors(401, 404, 429))
    async def add_note(conversation_id: uuid.UUID, body: NewNote, principal: Principal = who) -> Note:
        await load(principal, conversation_id)
        async with tenant_tx(pool, principal.tenant_id) as conn:
            row = await repo.add_note(conn, principal.tenant_id, conversation_id,
                                      principal.user_id, body.body)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "note.added", conversation_id, {})
        return Note(**dict(row))

    @router.put("/conversations/{conversation_id}/labels", response_model=Queued,
                responses=errors(401, 404, 429))
    async def labels(conversation_id: uuid.UUID, body: Labels, principal: Principal = who) -> Queued:
        await load(principal, conversation_id)
        clean = sorted({label.strip().lower()[:40] for label in body.labels if label.strip()})
        async with tenant_tx(pool, principal.tenant_id) as conn:
            await repo.set_labels(conn, principal.tenant_id, conversation_id, clean)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "labels.set", conversation_id,
                                     {"labels": clean})
        return Queued(status="done")

    @router.get("/canned-replies", response_model=CannedReplyList, responses=errors(401, 429))
    async def canned(principal: Principal = who) -> CannedReplyList:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            rows = await repo.canned_replies(conn)
        return CannedReplyList(replies=[CannedReply(**dict(r)) for r in rows])

    @router.post("/canned-replies", status_code=201, response_model=CannedReply,
                 responses=errors(401, 429))
    async def add_canned(body: NewCannedReply, principal: Principal = who) -> CannedReply:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            row = await repo.upsert_canned_reply(conn, principal.tenant_id, body.shortcut, body.body)
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "canned_reply.saved", row["id"],
                                     {"shortcut": body.shortcut})
        return CannedReply(**dict(row))

    @router.delete("/canned-replies/{reply_id}", status_code=204, responses=errors(401, 404, 429))
    async def delete_canned(reply_id: uuid.UUID, principal: Principal = who) -> Response:
        async with tenant_tx(pool, principal.tenant_id) as conn:
            if not await repo.delete_canned_reply(conn, reply_id):
                raise not_found(ROUTE, "canned reply")
            await repo.record_action(conn, principal.tenant_id, principal.user_id,
                                     principal.key_id, "canned_reply.deleted", reply_id, {})
        return Response(status_code=204)

    return router
