"""SQL of the dispatcher. Each function takes a tenant-scoped connection (`tenant_session`, whose
statements commit one by one, or `tenant_tx` where several writes must commit together); only
`take_quota` opens a transaction of its own, for its two writes.

The send's happy path is two statements: `claim_outbound` (read, context and claim at once) and
`finish_sent` (message, conversation and connection at once); every other write is conditional
on the status it expects, so no row lock has to be held across statements. A claim ends in one of
two ways: `release*` gives it back without an outcome (pending again), `finish*` records one.

Writes: messages (outbound send status), conversations.needs_attention / last_outbound_at,
leads.opted_out_at, channel_connections.healthy / last_error and the refreshed tokens,
dispatcher_send_quota, dispatcher_quota_uses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from tistis_common.events import OutboundMessage
from tistis_common.lease import holder_gone

from tistis_dispatcher.lease import LOCK_CLASS

FINAL = frozenset({"sent", "delivered", "read", "failed", "blocked_window", "skipped"})


@dataclass(frozen=True)
class Claim:
    """`claim_outbound`'s answer: the message row as it was before the statement, whether the
    statement won the claim, and all a send needs to decide (conversation, lead, tenant,
    channel connection; NULL when the conversation, or the connection, is not found)."""

    status: str
    direction: str
    payload: dict[str, Any] | None
    claimed_by: int | None
    age: timedelta  # since the row's last update
    claimed: bool
    conversation_id: uuid.UUID | None
    last_inbound_at: datetime | None
    platform_conversation_id: str | None
    opted_out_at: datetime | None
    timezone: str | None
    connection_id: uuid.UUID | None
    account_id: str | None
    access_token: str | None  # sealed (tistis_common.secrets)
    connection_settings: dict[str, Any] | None
    enabled: bool | None
    token_expires_at: datetime | None
    token_refresh_error: str | None


@dataclass(frozen=True)
class StatusMove:
    moved: bool  # the status moved up
    known: bool  # the message is ours


@dataclass(frozen=True)
class SentMessage:
    id: uuid.UUID
    status: str
    conversation_id: uuid.UUID
    lead_id: uuid.UUID


@dataclass(frozen=True)
class ConversationAccount:
    connection_id: uuid.UUID
    channel: str
    account_id: str
    access_token: str | None
    connection_settings: dict[str, Any] | None
    enabled: bool


@dataclass(frozen=True)
class ExpiringToken:
    tenant_id: uuid.UUID
    connection_id: uuid.UUID


@dataclass(frozen=True)
class RefreshClaim:
    """A connection's tokens and app credentials (secrets sealed), claimed for one refresh."""

    channel: str
    access_token: str | None
    refresh_token: str | None
    token_expires_at: datetime | None
    app_id: str | None
    app_secret: str | None


# The channel connection a conversation `c` is answered through: the account it came in on first,
# then an enabled one of the same channel.
_CONNECTION = """SELECT * FROM channel_connections cc
             WHERE cc.tenant_id = c.tenant_id AND cc.channel = c.channel
             ORDER BY (cc.platform_account_id = c.platform_account_id) DESC, cc.enabled DESC,
                      cc.created_at
             LIMIT 1"""


async def claim_outbound(conn: asyncpg.Connection, e: OutboundMessage,
                         claimer: int) -> Claim | None:
    """The message row, claimed pending -> sending by `claimer` when it is pending, with all a
    send needs to decide (conversation, lead, tenant time zone, channel connection): one round
    trip. None when no row exists yet (`insert_outbound`, then again).

    `claimed` says whether this statement won the claim; `status`, `claimed_by` and `age` are the
    row as it was before it. Claiming before the rules run saves a second statement: a refusal
    ends the claim again (`finish_unsent`). The context columns are NULL when the conversation is
    not found; the connection columns when the channel has no connection.
    """
    row = await conn.fetchrow(
        """WITH claimed AS (
             UPDATE messages SET status = 'sending', claimed_by = $3, updated_at = now()
             WHERE id = $1 AND direction = 'outbound' AND status = 'pending'
             RETURNING id)
           SELECT m.status, m.direction, m.payload, m.claimed_by, now() - m.updated_at AS age,
                  EXISTS (SELECT FROM claimed) AS claimed,
                  c.id AS conversation_id, c.last_inbound_at, c.platform_conversation_id,
                  l.opted_out_at, t.timezone,
                  cc.id AS connection_id, cc.platform_account_id AS account_id,
                  cc.access_token, cc.settings AS connection_settings, cc.enabled,
                  cc.token_expires_at, cc.token_refresh_error
           FROM messages m
           LEFT JOIN (conversations c
                      JOIN leads l ON l.id = c.lead_id
                      JOIN tenants t ON t.id = c.tenant_id) ON c.id = $2
           LEFT JOIN LATERAL (""" + _CONNECTION + """) cc ON true
           WHERE m.id = $1""",
        e.message_id, e.conversation_id, claimer,
    )
    return None if row is None else Claim(**row)


async def insert_outbound(conn: asyncpg.Connection, e: OutboundMessage) -> None:
    """The row from the event, for producers that do not store it first (scheduler, API); the AI
    responder inserts its replies as 'pending' before it publishes. A concurrent insert wins."""
    payload = e.model_dump(
        mode="json", exclude_none=True, exclude_defaults=True,
        include={"buttons", "list_button", "sections", "template", "media", "media_type",
                 "fallback_template"},
    )
    await conn.execute(
        """INSERT INTO messages (id, tenant_id, conversation_id, lead_id, channel, direction,
                                 sender_type, kind, content, payload, event_id, status, purpose)
           VALUES ($1, $2, $3, $4, $5, 'outbound', $6, $7, $8, $9, $10, 'pending', $11)
           ON CONFLICT DO NOTHING""",
        e.message_id, e.tenant_id, e.conversation_id, e.lead_id, e.channel.value, e.sender_type,
        e.kind, e.text, payload, e.event_id, e.purpose,
    )


async def finish_unsent(conn: asyncpg.Connection, message_id: uuid.UUID, claimed_by: int | None,
                    status: str, reason: str, flag: bool) -> bool:
    """A claim that ends without a send: sending (by `claimed_by`) -> a final status, with the
    conversation flagged for a human when `flag`, in one statement. False when the row is no
    longer that claim (someone else finished it meanwhile): nothing is written."""
    return await conn.fetchval(
        """WITH ended AS (
             UPDATE messages SET status = $3, error_code = NULL, error_title = $4,
                                 updated_at = now()
             WHERE id = $1 AND status = 'sending' AND claimed_by IS NOT DISTINCT FROM $2
             RETURNING conversation_id),
           flagged AS (
             UPDATE conversations SET needs_attention = true, attention_reason = $5,
                                      updated_at = now()
             WHERE $6 AND id IN (SELECT conversation_id FROM ended))
           SELECT EXISTS (SELECT FROM ended)""",
        message_id, claimed_by, status, reason, reason[:500], flag,
    )


async def release(conn: asyncpg.Connection, message_id: uuid.UUID, claimer: int) -> None:
    """sending -> pending before any platform call (the rules could not decide): a retry or a
    replay claims it again."""
    await conn.execute(
        """UPDATE messages SET status = 'pending', updated_at = now()
           WHERE id = $1 AND status = 'sending' AND claimed_by = $2""",
        message_id, claimer,
    )


async def claimer_gone(conn: asyncpg.Connection, key: int) -> bool:
    """True when no live session holds `key`'s lease (its process died)."""
    return await holder_gone(conn, LOCK_CLASS, key)


async def recent_inbound_texts(conn: asyncpg.Connection, lead_id: uuid.UUID,
                               limit: int = 20) -> list[str]:
    rows = await conn.fetch(
        """SELECT content FROM messages
           WHERE lead_id = $1 AND direction = 'inbound' AND sender_type = 'lead'
             AND content IS NOT NULL
           ORDER BY created_at DESC LIMIT $2""",
        lead_id, limit,
    )
    return [r["content"] for r in rows]


async def set_opted_out(conn: asyncpg.Connection, lead_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE leads SET opted_out_at = COALESCE(opted_out_at, now()), updated_at = now() "
        "WHERE id = $1",
        lead_id,
    )


async def release_for_retry(conn: asyncpg.Connection, message_id: uuid.UUID, code: int | None,
                            title: str | None) -> None:
    """sending -> pending with the platform's error: it did not take it; a retry or a replay
    will."""
    await conn.execute(
        """UPDATE messages SET status = 'pending', error_code = $2, error_title = $3,
                               updated_at = now()
           WHERE id = $1 AND status = 'sending'""",
        message_id, code, title,
    )


async def record_parts(conn: asyncpg.Connection, message_id: uuid.UUID, part_ids: list[str]) -> None:
    """Platform ids of the parts sent so far: a retry resumes after them."""
    await conn.execute(
        """UPDATE messages SET payload = payload || jsonb_build_object('part_ids', $2::jsonb),
                               updated_at = now()
           WHERE id = $1""",
        message_id, part_ids,
    )


async def finish_sent(conn: asyncpg.Connection, message_id: uuid.UUID, conversation_id: uuid.UUID,
                    platform_message_id: str, part_ids: list[str] | None,
                    connection_id: uuid.UUID) -> None:
    """`sent` with the platform id (and every part's id when it was split), the conversation's
    last outbound time, and the connection healthy again if it was not (a replay after a token
    fix), in one statement: one round trip, atomic."""
    await conn.execute(
        """WITH sent AS (
             UPDATE messages SET status = 'sent', platform_message_id = $2, sent_at = now(),
                                 error_code = NULL, error_title = NULL, updated_at = now(),
                                 payload = CASE WHEN $4::jsonb IS NULL THEN payload
                                           ELSE payload || jsonb_build_object('part_ids', $4::jsonb)
                                           END
             WHERE id = $1),
           conversation AS (
             UPDATE conversations SET last_outbound_at = now(), updated_at = now()
             WHERE id = $3)
           UPDATE channel_connections SET healthy = true, updated_at = now()
           WHERE id = $5 AND NOT healthy""",
        message_id, platform_message_id, conversation_id, part_ids, connection_id,
    )


async def finish_failed(conn: asyncpg.Connection, message_id: uuid.UUID, status: str,
                     code: int | None, title: str | None) -> None:
    await conn.execute(
        """UPDATE messages SET status = $2, error_code = $3, error_title = $4, updated_at = now()
           WHERE id = $1""",
        message_id, status, code, title,
    )


async def flag_conversation(conn: asyncpg.Connection, conversation_id: uuid.UUID,
                            reason: str) -> None:
    """A human should look: the patient did not get our message."""
    await conn.execute(
        """UPDATE conversations SET needs_attention = true, attention_reason = $2,
                                    updated_at = now()
           WHERE id = $1""",
        conversation_id, reason[:500],
    )


async def mark_unhealthy(conn: asyncpg.Connection, connection_id: uuid.UUID, error: str) -> None:
    """The token was refused: the channel needs the clinic (a successful send heals it)."""
    await conn.execute(
        """UPDATE channel_connections SET healthy = false, last_error = $2,
                                          last_error_at = now(), updated_at = now()
           WHERE id = $1""",
        connection_id, error,
    )


async def take_quota(
    conn: asyncpg.Connection, *, tenant_id: uuid.UUID, lead_id: uuid.UUID,
    message_id: uuid.UUID, parts: int, day: date, last_inbound_at: datetime | None,
    unanswered_limit: int,
) -> bool:
    """Reserve `parts` TikTok messages for this lead, atomically; False when over the limit of
    messages since the patient's last message (TikTok's rule as its integrators document it:
    up to 10 messages until the user writes again, inside the window; no calendar-day cap:
    documentation.qiscus.com/omnichannel-chat/tiktok-direct-message, help.chatfuel.com
    "Messaging rules for TikTok", docsboptr.cekat.ai/docs/chat/platform/tiktok-dm). `day` and
    `day_count` are still kept, as a record only.

    One row per lead; the conditional upsert locks it, so concurrent sends are serialised and
    none passes the limit. A message that already took its quota (a retry) takes none again:
    the counters and the message's use are written in one transaction.
    """
    if await conn.fetchval(
        "SELECT true FROM dispatcher_quota_uses WHERE message_id = $1", message_id
    ):
        return True
    if parts > unanswered_limit:
        return False
    async with conn.transaction():
        taken = await conn.fetchval(
            """INSERT INTO dispatcher_send_quota AS q
                      (tenant_id, lead_id, day, day_count, streak_since, streak_count)
               VALUES ($1, $2, $3, $4, $5, $4)
               ON CONFLICT (tenant_id, lead_id) DO UPDATE SET
                 day = EXCLUDED.day,
                 day_count = CASE WHEN q.day = EXCLUDED.day THEN q.day_count ELSE 0 END + $4,
                 streak_since = EXCLUDED.streak_since,
                 streak_count = CASE WHEN q.streak_since IS NOT DISTINCT FROM EXCLUDED.streak_since
                                     THEN q.streak_count ELSE 0 END + $4,
                 updated_at = now()
               WHERE CASE WHEN q.streak_since IS NOT DISTINCT FROM EXCLUDED.streak_since
                          THEN q.streak_count ELSE 0 END + $4 <= $6
               RETURNING true""",
            tenant_id, lead_id, day, parts, last_inbound_at, unanswered_limit,
        )
        if not taken:
            return False
        await conn.execute(
            "INSERT INTO dispatcher_quota_uses (tenant_id, message_id, parts) VALUES ($1, $2, $3)",
            tenant_id, message_id, parts,
        )
    return True


# -------------------------------------------------------------------- status webhooks


async def advance_status(conn: asyncpg.Connection, channel: str, platform_message_id: str,
                         status: str, below: list[str]) -> StatusMove:
    """The common status webhook in one statement: move our message to `status` if it is at one
    of the lower statuses `below`. `moved`: it did; `known`: the message is ours (a status that
    moved nothing is then one it already has, or passed). The rank condition is on the row
    itself, so a concurrent update is re-checked and a status never moves backwards."""
    row = await conn.fetchrow(
        """WITH moved AS (
             UPDATE messages SET status = $3, updated_at = now()
             WHERE channel = $1 AND platform_message_id = $2 AND direction = 'outbound'
               AND status = ANY($4::text[])
             RETURNING id
           )
           SELECT EXISTS (SELECT 1 FROM moved) AS moved,
                  EXISTS (SELECT 1 FROM messages WHERE channel = $1 AND platform_message_id = $2
                                                   AND direction = 'outbound') AS known""",
        channel, platform_message_id, status, below,
    )
    return StatusMove(**row)


async def find_by_platform_id(conn: asyncpg.Connection, channel: str,
                              platform_message_id: str) -> SentMessage | None:
    """Our outbound message by its platform id, or by the id of an earlier part of a split
    text (both lookups indexed), locked for the status update."""
    row = await conn.fetchrow(
        """SELECT id, status, conversation_id, lead_id FROM messages
           WHERE channel = $1 AND platform_message_id = $2 AND direction = 'outbound'
           FOR UPDATE""",
        channel, platform_message_id,
    )
    if row is None:
        row = await conn.fetchrow(
            """SELECT id, status, conversation_id, lead_id FROM messages
               WHERE direction = 'outbound' AND channel = $1 AND (payload -> 'part_ids') ? $2
               LIMIT 1 FOR UPDATE""",
            channel, platform_message_id,
        )
    return None if row is None else SentMessage(**row)


async def any_in_flight(conn: asyncpg.Connection, channel: str, within_seconds: float) -> bool:
    """Is a send of this tenant and channel between its platform call and its commit?
    (A claim older than the timeout is a crash, not a send in flight.)"""
    return bool(await conn.fetchval(
        """SELECT true FROM messages
           WHERE direction = 'outbound' AND status = 'sending' AND channel = $1
             AND updated_at > now() - make_interval(secs => $2) LIMIT 1""",
        channel, within_seconds,
    ))


async def set_status(conn: asyncpg.Connection, message_id: uuid.UUID, status: str,
                     code: int | None, title: str | None) -> None:
    await conn.execute(
        """UPDATE messages SET status = $2, error_code = COALESCE($3, error_code),
                               error_title = COALESCE($4, error_title), updated_at = now()
           WHERE id = $1""",
        message_id, status, code, title,
    )


async def mark_read_up_to(conn: asyncpg.Connection, channel: str, platform_user_id: str,
                          status: str, up_to: datetime) -> int:
    """A watermark (Messenger `read`, TikTok `im_mark_read_msg`): every message we sent this
    patient at or before `up_to` has reached at least `status`; none moves backwards."""
    result = await conn.execute(
        """UPDATE messages m SET status = $3, updated_at = now()
           FROM leads l
           WHERE m.lead_id = l.id AND l.channel = $1 AND l.platform_user_id = $2
             AND m.direction = 'outbound' AND m.sent_at <= $4
             AND (m.status = 'sent' OR (m.status = 'delivered' AND $3 = 'read'))""",
        channel, platform_user_id, status, up_to,
    )
    return int(result.split()[-1])


async def conversation_account(conn: asyncpg.Connection,
                               conversation_id: uuid.UUID) -> ConversationAccount | None:
    """The channel connection a conversation is answered through (as `claim_outbound` picks it)."""
    row = await conn.fetchrow(
        """SELECT cc.id AS connection_id, cc.channel, cc.platform_account_id AS account_id,
                  cc.access_token, cc.settings AS connection_settings, cc.enabled
           FROM conversations c
           JOIN LATERAL (""" + _CONNECTION + """) cc ON true
           WHERE c.id = $1""",
        conversation_id,
    )
    return None if row is None else ConversationAccount(**row)


# --------------------------------------------------------------------- token refresh
# The access token and the refresh token are stored sealed (tistis_common.secrets): the caller
# seals what it writes and opens what it reads, here as for `claim_outbound`'s access token.


async def tokens_expiring(conn: asyncpg.Connection, tiktok_margin_s: float,
                          instagram_margin_s: float) -> list[ExpiringToken]:
    """Every tenant's tokens due for a refresh (0950)."""
    rows = await conn.fetch(
        """SELECT tenant_id, connection_id
           FROM tokens_expiring(make_interval(secs => $1), make_interval(secs => $2))""",
        tiktok_margin_s, instagram_margin_s,
    )
    return [ExpiringToken(**r) for r in rows]


async def claim_refresh(conn: asyncpg.Connection, connection_id: uuid.UUID,
                        stale_after_s: float) -> RefreshClaim | None:
    """The connection's tokens and app credentials, claimed for one refresh; None while another
    attempt holds a claim younger than `stale_after_s`."""
    row = await conn.fetchrow(
        """UPDATE channel_connections SET token_refresh_started_at = now()
           WHERE id = $1 AND enabled
             AND (token_refresh_started_at IS NULL
                  OR token_refresh_started_at < now() - make_interval(secs => $2))
           RETURNING channel, access_token, refresh_token, token_expires_at, app_id, app_secret""",
        connection_id, stale_after_s,
    )
    return None if row is None else RefreshClaim(**row)


async def store_tokens(conn: asyncpg.Connection, connection_id: uuid.UUID, access_token: str,
                       refresh_token: str | None, expires_at: datetime) -> None:
    """A refresh's new tokens (sealed); the connection works again."""
    await conn.execute(
        """UPDATE channel_connections SET access_token = $2,
             refresh_token = COALESCE($3, refresh_token), token_expires_at = $4,
             token_refresh_started_at = NULL, token_refresh_error = NULL, healthy = true,
             updated_at = now()
           WHERE id = $1""",
        connection_id, access_token, refresh_token, expires_at,
    )


async def refresh_refused(conn: asyncpg.Connection, connection_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        """UPDATE channel_connections SET healthy = false, last_error = $2, last_error_at = now(),
             token_refresh_error = $2, token_refresh_started_at = NULL, updated_at = now()
           WHERE id = $1""",
        connection_id, error[:500],
    )


async def end_refresh_claim(conn: asyncpg.Connection, connection_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE channel_connections SET token_refresh_started_at = NULL WHERE id = $1",
        connection_id,
    )
