"""SQL for leads, conversations and messages. Takes a connection, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
from tistis_common.events import InboundMessage

from .context import TenantContext


@dataclass(frozen=True)
class StoredInbound:
    lead_id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID | None  # None: its event id is stored under another platform message id
    new: bool  # False: a redelivery found what the first delivery stored
    first: bool  # the lead's first message: announce the lead


async def store_inbound(conn: asyncpg.Connection, e: InboundMessage) -> StoredInbound:
    """Lead, conversation and message in one statement, once per platform message id.

    Run under the patient's lock, so no other delivery for this patient interleaves. A new patient
    message opens the 24 h window, counts towards auto escalation and reopens a closed
    conversation; one from staff (the platform's own app) hands the conversation to them.
    """
    payload = e.model_dump(
        mode="json", include={"media", "location", "reply_to", "choice_id", "choice_title",
                              "target_id", "error", "referral", "details", "new_user_id"},
        exclude_none=True,
    ) | ({"standby": True} if e.standby else {})
    row = await conn.fetchrow(
        """WITH lead AS (
             INSERT INTO leads (tenant_id, channel, platform_user_id, name, phone, last_inbound_at)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 = 'lead' THEN $7::timestamptz END)
             ON CONFLICT (tenant_id, channel, platform_user_id) DO UPDATE SET
               name = COALESCE(leads.name, EXCLUDED.name),
               phone = COALESCE(leads.phone, EXCLUDED.phone),
               last_inbound_at = GREATEST(leads.last_inbound_at, EXCLUDED.last_inbound_at),
               updated_at = now()
             RETURNING id
           ), earlier AS (
             SELECT id FROM messages
             WHERE tenant_id = $1 AND channel = $2 AND platform_message_id = $8
           ), arrival AS (
             SELECT NOT EXISTS (SELECT 1 FROM earlier) AS new,
                    $6 = 'lead' AND NOT EXISTS (SELECT 1 FROM earlier) AS counts
           ), conversation AS (
             INSERT INTO conversations AS c (tenant_id, lead_id, channel, platform_account_id,
                                             platform_conversation_id, status, last_inbound_at,
                                             unresolved_inbound)
             SELECT $1, lead.id, $2, $9, $10,
                    CASE WHEN $6 = 'agent' THEN 'human' ELSE 'active' END,
                    CASE WHEN arrival.counts THEN $7::timestamptz END,
                    CASE WHEN arrival.counts THEN 1 ELSE 0 END
             FROM lead, arrival
             ON CONFLICT (tenant_id, lead_id, channel) DO UPDATE SET
               platform_conversation_id = COALESCE(EXCLUDED.platform_conversation_id,
                                                   c.platform_conversation_id),
               status = CASE WHEN $6 = 'agent' THEN 'human'
                             WHEN EXCLUDED.unresolved_inbound > 0 AND c.status = 'closed'
                               THEN 'active'
                             ELSE c.status END,
               last_inbound_at = GREATEST(c.last_inbound_at, EXCLUDED.last_inbound_at),
               unresolved_inbound = c.unresolved_inbound + EXCLUDED.unresolved_inbound,
               updated_at = now()
             RETURNING c.id
           ), message AS (
             INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                   sender_type, kind, content, payload, platform_message_id,
                                   event_id, status, sent_at)
             SELECT $1, conversation.id, lead.id, $2, 'inbound', $6, $11, $12, $13, $8, $14,
                    'received', $7
             FROM lead, conversation, arrival WHERE arrival.new
             ON CONFLICT DO NOTHING
             RETURNING id
           )
           SELECT lead.id AS lead_id, conversation.id AS conversation_id,
                  COALESCE((SELECT id FROM message), (SELECT id FROM earlier)) AS message_id,
                  EXISTS (SELECT 1 FROM message) AS new,
                  CASE WHEN EXISTS (SELECT 1 FROM message)
                       -- this statement cannot see its own insert: first if nothing came before
                       THEN NOT EXISTS (SELECT 1 FROM messages m WHERE m.lead_id = lead.id)
                       ELSE (SELECT m.id FROM messages m WHERE m.lead_id = lead.id
                             ORDER BY m.created_at, m.id LIMIT 1) = (SELECT id FROM earlier)
                  END AS first
           FROM lead, conversation""",
        e.tenant_id, e.channel.value, e.platform_user_id, e.display_name, e.phone,
        e.sender_type, e.sent_at, e.platform_message_id, e.platform_account_id,
        e.platform_conversation_id, e.kind, e.text, payload, e.event_id,
    )
    assert row is not None  # the lead and conversation upserts always return their row
    return StoredInbound(row["lead_id"], row["conversation_id"], row["message_id"], row["new"],
                         row["first"])


async def canonical_user(conn: asyncpg.Connection, e: InboundMessage) -> str | None:
    """The lead's id when the patient is known under another of their ids (a WhatsApp
    business-scoped user id first seen, the phone number later, or the other way round)."""
    ids = [e.platform_user_id, *e.user_aliases]
    return await conn.fetchval(
        """SELECT platform_user_id FROM leads
           WHERE channel = $1 AND (platform_user_id = ANY($2::text[]) OR user_aliases && $2::text[])
           ORDER BY platform_user_id = $3 DESC, created_at LIMIT 1""",
        e.channel.value, ids, e.platform_user_id,
    )


async def annotate_lead(conn: asyncpg.Connection, lead_id: uuid.UUID, e: InboundMessage) -> None:
    """What a message tells about the patient: their other ids, the ad or link they came
    from, a new number or user id (WhatsApp `system`: the lead follows it)."""
    aliases = [*e.user_aliases, *([e.platform_user_id] if e.new_user_id else [])]
    await conn.execute(
        """UPDATE leads SET
             user_aliases = ARRAY(SELECT DISTINCT a FROM unnest(user_aliases || $2::text[]) a
                                  WHERE a <> COALESCE($4, platform_user_id)),
             referral = COALESCE(referral, $3::jsonb),
             platform_user_id = CASE WHEN $4::text IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM leads o WHERE o.channel = leads.channel AND o.platform_user_id = $4)
               THEN $4 ELSE platform_user_id END,
             updated_at = now()
           WHERE id = $1""",
        lead_id, aliases, e.referral, e.new_user_id if e.kind == "system" else None,
    )


async def apply_to_target(conn: asyncpg.Connection, conversation_id: uuid.UUID,
                          e: InboundMessage) -> bool:
    """A reaction, edit or unsend changes the message it names (in this conversation): staff
    see the reaction, both versions of an edit, an unsent message marked."""
    at = e.sent_at.isoformat()
    if e.kind == "edit":
        change = """content = $4, payload = payload || jsonb_build_object('edited_at', $5::text,
                      'versions', COALESCE(payload->'versions', '[]'::jsonb)
                                  || to_jsonb(COALESCE(content, '')))"""
        args: tuple = (e.text or "", at)
    elif e.kind == "unsend":
        change = "payload = payload || jsonb_build_object('unsent_at', $4::text)"
        args = (at,)
    elif e.text:  # a reaction
        change = "payload = payload || jsonb_build_object('reaction', $4::text, 'reacted_at', $5::text)"
        args = (e.text, at)
    else:  # a reaction taken back
        change = "payload = payload - 'reaction' || jsonb_build_object('reacted_at', $4::text)"
        args = (at,)
    result = await conn.execute(
        f"""UPDATE messages SET {change}, updated_at = now()
            WHERE conversation_id = $1 AND channel = $2 AND platform_message_id = $3""",
        conversation_id, e.channel.value, e.target_id, *args,
    )
    return result != "UPDATE 0"


async def conversation_exists(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> bool:
    """The conversation, with its lead, is in the tenant's scope."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM conversations c JOIN leads l ON l.id = c.lead_id
                          WHERE c.id = $1)""",
        conversation_id,
    ))


@dataclass(frozen=True)
class ReplyState:
    """What a reply decision reads of its conversation (`reply_state` says what each means)."""

    id: uuid.UUID  # the conversation
    status: str
    unresolved_inbound: int
    channel: str
    lead_id: uuid.UUID
    platform_user_id: str
    spam: bool
    lead_name: str | None
    opted_out_at: datetime | None
    context_version: int
    answered_through: datetime | None
    latest_choice: str | None
    stored: bool
    stored_payload: dict[str, Any] | None
    handed_to_n8n: bool
    latest_id: uuid.UUID | None
    latest_at: datetime | None
    latest_platform_id: str | None
    answered: bool
    unanswered: list[str]
    history: list[dict[str, Any]]


def _reply_state(row: asyncpg.Record) -> ReplyState:
    return ReplyState(**{f.name: row[f.name] for f in fields(ReplyState)})


@dataclass(frozen=True)
class Claim:
    claimed: bool  # this statement took the lease
    claimed_through: datetime | None  # `answered_through` of the row as claimed
    state: ReplyState


_REPLY_STATE = """SELECT c.id, c.status, c.unresolved_inbound, c.channel,
                  l.id AS lead_id, l.platform_user_id, l.spam, l.name AS lead_name,
                  l.opted_out_at, t.context_version, c.answered_through,
                  latest.payload->>'choice_id' AS latest_choice,
                  stored.id IS NOT NULL AS stored, stored.payload AS stored_payload,
                  EXISTS (SELECT 1 FROM processed_events
                          WHERE consumer = $3 AND event_id = $2) AS handed_to_n8n,
                  latest.id AS latest_id, latest.created_at AS latest_at,
                  latest.platform_message_id AS latest_platform_id,
                  COALESCE(c.answered_through >= latest.created_at, false) OR EXISTS (
                    SELECT 1 FROM messages o
                    WHERE o.conversation_id = c.id AND o.direction = 'outbound'
                      AND (o.sender_type = 'agent'
                           OR (o.sender_type = 'ai' AND c.answered_through IS NULL))
                      AND o.created_at > latest.created_at) AS answered,
                  ARRAY(SELECT m.content FROM messages m
                        WHERE m.conversation_id = c.id AND m.direction = 'inbound'
                          AND m.sender_type = 'lead' AND m.content IS NOT NULL
                          AND m.created_at > cutoff.at
                        ORDER BY m.created_at, m.id) AS unanswered,
                  (SELECT COALESCE(json_agg(json_build_object(
                            'id', h.id, 'direction', h.direction, 'sender_type', h.sender_type,
                            'kind', h.kind, 'content', h.content)
                          ORDER BY (h.direction = 'inbound' AND h.sender_type = 'lead'
                                    AND h.created_at > cutoff.at), h.created_at, h.id), '[]')
                   FROM (SELECT id, direction, sender_type, kind, content, created_at
                         FROM messages WHERE conversation_id = c.id AND status <> 'failed'
                         ORDER BY created_at DESC, id DESC LIMIT $4) h) AS history
           FROM conversations c
           JOIN leads l ON l.id = c.lead_id
           JOIN tenants t ON t.id = c.tenant_id
           LEFT JOIN messages stored ON stored.id = $2
           LEFT JOIN LATERAL (
             SELECT id, created_at, platform_message_id, payload FROM messages
             WHERE conversation_id = c.id AND direction = 'inbound' AND sender_type = 'lead'
             ORDER BY created_at DESC, sent_at DESC NULLS LAST, id DESC LIMIT 1) latest ON true
           -- What the clinic last answered: the newest patient message a reply covered, or
           -- anything else the clinic sent (staff, the scheduler). Replies stored before
           -- migration 0800 have no `answered_through`: their own time counts.
           CROSS JOIN LATERAL (
             SELECT COALESCE(GREATEST(c.answered_through, (
                      SELECT max(o.created_at) FROM messages o
                      WHERE o.conversation_id = c.id AND o.direction = 'outbound'
                        AND (o.sender_type <> 'ai' OR c.answered_through IS NULL))),
                    '-infinity') AS at) cutoff
           WHERE c.id = $1"""


async def reply_state(conn: asyncpg.Connection, conversation_id: uuid.UUID, reply_id: uuid.UUID,
                      history_limit: int) -> ReplyState | None:
    """Everything a reply decision reads, in one statement (one snapshot), under the lease:

    - the conversation and its lead; the tenant's `context_version` (is the cached context
      still current?);
    - `stored_payload` / `stored`: this reply was already stored (a redelivery re-emits it);
      `handed_to_n8n`: it was handed to the tenant's n8n workflow;
    - `latest_id`, `latest_at`, `latest_platform_id`: the patient's latest message (a burst is
      answered by its last message); `answered`: a reply has covered it (`answered_through`)
      or staff have written since;
    - `unanswered`: patient texts after what the clinic last answered (what one reply must
      answer): messages stored while the model was thinking belong to the next reply;
    - `history`: the last `history_limit` messages for the model, oldest first, with the
      unanswered patient messages last (a reply answered what came before it, even when the
      patient wrote again while it was being composed).
    """
    row = await conn.fetchrow(_REPLY_STATE, conversation_id, reply_id, N8N_CONSUMER,
                              history_limit)
    return None if row is None else _reply_state(row)


async def claim_and_read(conn: asyncpg.Connection, conversation_id: uuid.UUID,
                         reply_id: uuid.UUID, history_limit: int, process_key: int,
                         attempt: uuid.UUID, lock_class: int) -> Claim | None:
    """Take the conversation's reply lease for `attempt` (`lease`) and read `reply_state`, in one
    round trip. The lease is free, or held by a process that is gone (its advisory lock is free:
    taken here for this statement only), or by this process without a live attempt (the caller
    checked that it has none). `claimed`: this statement took it. The read is the statement's
    snapshot, taken before a reply stored by the previous holder at that very moment:
    `claimed_through` (the row as claimed) differs from `answered_through` then, and the caller
    reads again."""
    row = await conn.fetchrow(
        """WITH claim AS (
             UPDATE conversations SET reply_lease = $6, reply_lease_by = $5
             WHERE id = $1
               AND (reply_lease IS NULL OR reply_lease_by = $5
                    OR pg_try_advisory_xact_lock($7, reply_lease_by))
             RETURNING answered_through)
           SELECT state.*, EXISTS (SELECT 1 FROM claim) AS claimed,
                  (SELECT answered_through FROM claim) AS claimed_through
           FROM (""" + _REPLY_STATE + """) state""",
        conversation_id, reply_id, N8N_CONSUMER, history_limit, process_key, attempt, lock_class,
    )
    return None if row is None else Claim(row["claimed"], row["claimed_through"], _reply_state(row))


async def release_reply(conn: asyncpg.Connection, conversation_id: uuid.UUID,
                        attempt: uuid.UUID) -> None:
    await conn.execute(
        """UPDATE conversations SET reply_lease = NULL, reply_lease_by = NULL
           WHERE id = $1 AND reply_lease = $2""",
        conversation_id, attempt,
    )


async def stored_reply_payload(conn: asyncpg.Connection,
                               message_id: uuid.UUID) -> dict[str, Any] | None:
    """The payload a reply was stored with (its events), None when there is no such reply."""
    row = await conn.fetchrow("SELECT id, payload FROM messages WHERE id = $1", message_id)
    return None if row is None else row["payload"]


async def tenant_context(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, default_model: str,
                         opt_out_words: Sequence[str],
                         opt_in_words: Sequence[str]) -> TenantContext | None:
    """The tenant's AI settings with its name and timezone (defaults when no row was set up) and
    its catalog; None when there is no such tenant."""
    row = await conn.fetchrow(
        """SELECT t.name AS tenant_name, t.timezone, a.system_prompt, a.temperature, a.max_tokens,
                  a.response_style, a.business_hours, a.escalation_keywords,
                  a.auto_escalate_after_messages, a.ai_provider, a.model, a.language,
                  a.opt_out_words, a.opt_in_words
           FROM tenants t LEFT JOIN ai_tenant_context a ON a.tenant_id = t.id
           WHERE t.id = $1""",
        tenant_id,
    )
    if row is None:
        return None
    return TenantContext.from_rows(tenant_id, dict(row), await _catalog(conn), default_model,
                                   opt_out_words, opt_in_words)


async def _catalog(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    """Services, branches and FAQs of the tenant in scope (RLS), in a stable order for caching."""
    return {
        "services": await conn.fetch(
            """SELECT id, name, description, price_min, price_max, currency, duration_minutes,
                      keywords FROM services ORDER BY name"""
        ),
        "branches": await conn.fetch(
            "SELECT id, name, address, phone, opening_hours FROM branches ORDER BY name"
        ),
        "faqs": await conn.fetch("SELECT question, answer, keywords FROM faqs ORDER BY question"),
    }


async def store_reply(
    conn: asyncpg.Connection, *, message_id: uuid.UUID, tenant_id: uuid.UUID,
    conversation_id: uuid.UUID, lead_id: uuid.UUID, channel: str, text: str, purpose: str,
    payload: dict, fallback: bool, model: str | None, input_tokens: int | None,
    output_tokens: int | None, cache_read_tokens: int | None, latency_ms: int | None,
    escalation_reason: str | None, resolved: bool, attempt: uuid.UUID,
    answered_through: datetime | None, kind: str = "text",
) -> tuple[bool, bool]:
    """The reply, what it does to its conversation and the end of the lease, atomically (one
    statement), only while `attempt` still holds the lease. Returns (leased, stored): stored is
    False when this reply was already stored.

    Status 'pending': the dispatcher owns the status from here. `answered_through` moves to
    the newest patient message the reply answered. An escalation hands the conversation to the
    staff (`escalate_conversation`); a reply that led somewhere (an appointment request) starts
    the count towards auto escalation again.
    """
    row = await conn.fetchrow(
        """WITH conversation AS (
             UPDATE conversations SET
               reply_lease = NULL, reply_lease_by = NULL,
               answered_through = GREATEST(answered_through, $18),
               status = CASE WHEN $15::text IS NOT NULL AND status IN ('active', 'escalated')
                             THEN 'escalated' ELSE status END,
               escalation_reason = CASE WHEN $15::text IS NOT NULL
                                         AND status IN ('active', 'escalated')
                                        THEN $15 ELSE escalation_reason END,
               escalated_at = CASE WHEN $15::text IS NOT NULL AND status IN ('active', 'escalated')
                                   THEN now() ELSE escalated_at END,
               unresolved_inbound = CASE
                 WHEN ($15::text IS NOT NULL AND status IN ('active', 'escalated')) OR $16
                 THEN 0 ELSE unresolved_inbound END,
               updated_at = now()
             WHERE id = $3 AND reply_lease = $17
             RETURNING id
           ), reply AS (
             INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel, direction,
                                   sender_type, kind, content, payload, status, purpose,
                                   fallback, model, input_tokens, output_tokens,
                                   cache_read_tokens, latency_ms)
             SELECT $1, $2, $3, $4, $5, 'outbound', 'ai', $19, $6, $7, 'pending', $8, $9,
                    $10, $11, $12, $13, $14
             FROM conversation
             ON CONFLICT (id) DO NOTHING
             RETURNING id
           )
           SELECT EXISTS (SELECT 1 FROM conversation) AS leased,
                  EXISTS (SELECT 1 FROM reply) AS stored""",
        message_id, tenant_id, conversation_id, lead_id, channel, text, payload, purpose,
        fallback, model, input_tokens, output_tokens, cache_read_tokens, latency_ms,
        escalation_reason, resolved, attempt, answered_through, kind,
    )
    return bool(row["leased"]), bool(row["stored"])


async def last_menu(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> dict | None:
    """The last services menu the assistant sent here (its OutboundMessage), if any."""
    payload = await conn.fetchval(
        """SELECT payload->'events'->0 FROM messages
           WHERE conversation_id = $1 AND direction = 'outbound' AND sender_type = 'ai'
             AND kind = 'list'
           ORDER BY created_at DESC LIMIT 1""",
        conversation_id,
    )
    return payload if isinstance(payload, dict) else None


async def store_quote(conn: asyncpg.Connection, *, id: uuid.UUID, tenant_id: uuid.UUID,
                      lead_id: uuid.UUID, conversation_id: uuid.UUID, message_id: uuid.UUID,
                      items: list[dict], total_min: object, total_max: object,
                      currency: str) -> None:
    await conn.execute(
        """INSERT INTO quotes (id, tenant_id, lead_id, conversation_id, message_id, items,
                               total_min, total_max, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING""",
        id, tenant_id, lead_id, conversation_id, message_id, items, total_min, total_max,
        currency,
    )


async def add_interests(conn: asyncpg.Connection, lead_id: uuid.UUID, names: list[str]) -> None:
    """Appended once each, in the order first shown (the legacy scorer reads them)."""
    await conn.execute(
        """UPDATE leads SET interested_services = interested_services || ARRAY(
             SELECT n FROM unnest($2::text[]) WITH ORDINALITY AS x(n, i)
             WHERE n <> ALL (interested_services) ORDER BY i), updated_at = now()
           WHERE id = $1 AND NOT ($2::text[] <@ interested_services)""",
        lead_id, names,
    )


async def set_lead_opt_out(conn: asyncpg.Connection, lead_id: uuid.UUID, opted_out: bool,
                           at: datetime) -> None:
    await conn.execute(
        """UPDATE leads SET opted_out_at = CASE WHEN $2 THEN COALESCE(opted_out_at, $3) END,
             updated_at = now() WHERE id = $1""",
        lead_id, opted_out, at,
    )


async def escalate_conversation(
    conn: asyncpg.Connection, conversation_id: uuid.UUID, reason: str
) -> None:
    """Waiting for a human now; the patient-message count starts again."""
    await conn.execute(
        """UPDATE conversations SET status = 'escalated', escalation_reason = $2,
             escalated_at = now(), unresolved_inbound = 0, updated_at = now()
           WHERE id = $1 AND status IN ('active', 'escalated')""",
        conversation_id, reason,
    )


N8N_CONSUMER = "ai-responder.n8n"


async def mark_handed_to_n8n(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                             reply_id: uuid.UUID, conversation_id: uuid.UUID,
                             attempt: uuid.UUID) -> None:
    """Marked once posted, and the lease given back, in one statement."""
    await conn.execute(
        """WITH released AS (
             UPDATE conversations SET reply_lease = NULL, reply_lease_by = NULL
             WHERE id = $4 AND reply_lease = $5)
           INSERT INTO processed_events (consumer, event_id, tenant_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        N8N_CONSUMER, reply_id, tenant_id, conversation_id, attempt,
    )


async def is_own_echo(conn: asyncpg.Connection, e: InboundMessage) -> bool:
    """A "staff" message that is really one of our own sends coming back (TikTok reports our API
    sends as `im_send_msg`, Instagram echoes carry no app id; an echo may beat the dispatcher's
    commit of the platform id, so a text sent to the same patient in the last two minutes counts
    too, and so does each part of a text the dispatcher split)."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (
             SELECT 1 FROM messages m JOIN leads l ON l.id = m.lead_id
             WHERE m.direction = 'outbound' AND l.channel = $1 AND l.platform_user_id = $2
               AND (m.platform_message_id = $3
                    OR (m.created_at > now() - interval '2 minutes' AND length($4) > 0
                        AND strpos(m.content, $4) > 0)))""",
        e.channel.value, e.platform_user_id, e.platform_message_id, e.text,
    ))


async def set_opted_out(conn: asyncpg.Connection, channel: str, platform_user_id: str,
                        opted_out: bool, at: datetime) -> bool:
    result = await conn.execute(
        """UPDATE leads SET opted_out_at = CASE WHEN $3 THEN COALESCE(opted_out_at, $4) END,
             updated_at = now()
           WHERE channel = $1 AND platform_user_id = $2""",
        channel, platform_user_id, opted_out, at,
    )
    return result != "UPDATE 0"


async def release_conversation(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> None:
    """Staff hand the conversation back: the AI answers again, counting from zero."""
    await conn.execute(
        """UPDATE conversations SET status = 'active', escalation_reason = NULL,
             unresolved_inbound = 0, updated_at = now()
           WHERE id = $1 AND status IN ('escalated', 'human')""",
        conversation_id,
    )


@dataclass(frozen=True)
class AiConversation:
    """What n8n's `ai-conversation` body carries (`n8n.build_ai_conversation_payload`), shaped
    as the guide's JSON: these keys are the guide's field names."""

    conversation: dict[str, Any]
    messages: list[dict[str, Any]]  # oldest first
    lead: dict[str, Any]
    context: dict[str, Any]


async def ai_conversation(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                          conversation_id: uuid.UUID, history: int) -> AiConversation:
    """The conversation, its lead, its last `history` messages and the clinic's catalog, for
    the tenant's n8n workflow; `conn` must be in the tenant's scope, in a transaction."""
    conv = await conn.fetchrow(
        "SELECT id, lead_id, channel, status FROM conversations WHERE id = $1", conversation_id
    )
    if conv is None:
        raise LookupError(f"conversation {conversation_id} not found")
    lead = await conn.fetchrow(
        """SELECT id, name, phone, interested_services, score, classification FROM leads
           WHERE id = $1""", conv["lead_id"],
    )
    rows = await conn.fetch(
        """SELECT content, sender_type, created_at FROM (
             SELECT content, sender_type, created_at FROM messages WHERE conversation_id = $1
             ORDER BY created_at DESC LIMIT $2) recent ORDER BY created_at""",
        conversation_id, history,
    )
    services = await conn.fetch(
        "SELECT id, name, description, price_min, price_max, currency, duration_minutes FROM services"
        " ORDER BY name"
    )
    faqs = await conn.fetch("SELECT question, answer FROM faqs ORDER BY question")
    hours = await conn.fetchval("SELECT business_hours FROM ai_tenant_context WHERE tenant_id = $1",
                                tenant_id)
    context = {"services": [dict(s) for s in services], "faqs": [dict(f) for f in faqs],
               "business_hours": hours or {}}
    return AiConversation(dict(conv), [dict(r) for r in rows], dict(lead) if lead else {}, context)
