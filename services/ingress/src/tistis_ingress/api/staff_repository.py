"""SQL of the inbox: staff accounts, sessions, the inbox state of conversations, notes, labels,
canned replies, templates and the audit trail. Functions take a connection already in the
tenant's scope (tenant_tx) and never commit; RLS keeps every statement inside that tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

# ------------------------------------------------------------------ accounts


async def key_principal(pool: asyncpg.Pool, key_hash: str) -> asyncpg.Record | None:
    """Who a personal or tenant API key is (SECURITY DEFINER: before any tenant scope)."""
    return await pool.fetchrow("SELECT * FROM api_key_principal($1)", key_hash)


async def session_principal(pool: asyncpg.Pool, token_hash: str) -> asyncpg.Record | None:
    """Who a staff session is (SECURITY DEFINER: before any tenant scope)."""
    return await pool.fetchrow("SELECT * FROM staff_session_principal($1)", token_hash)


async def touch_key(conn: asyncpg.Connection, key_id: uuid.UUID) -> None:
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key_id)


async def tenant_profile(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> asyncpg.Record:
    """The tenant's slug, name and timezone (`/me`)."""
    return await conn.fetchrow("SELECT slug, name, timezone FROM tenants WHERE id = $1",
                               tenant_id)


async def count_hit(pool: asyncpg.Pool, bucket: str, window_start: int) -> int:
    """One more hit in the bucket's fixed window starting at `window_start` (epoch seconds);
    the window's hits so far (`rate_limits`, across replicas)."""
    hits: int = await pool.fetchval(
        """INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, to_timestamp($2), 1)
           ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1
           RETURNING hits""",
        bucket, window_start,
    )
    return hits


async def forget_old_windows(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM rate_limits WHERE window_start < now() - interval '1 day'")


# What a failed query raises, for a caller that logs it and goes on (the template sync): asyncpg
# is imported by repositories only.
QUERY_FAILED = asyncpg.PostgresError

async def user_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, email, name, role, language, password_hash, disabled_at
           FROM staff_users WHERE email = lower($1)""", email)


async def user(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, email, name, role, language, disabled_at, created_at
           FROM staff_users WHERE id = $1""", user_id)


async def users(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, email, name, role, language, disabled_at, created_at
           FROM staff_users ORDER BY name, email""")


async def set_disabled(conn: asyncpg.Connection, user_id: uuid.UUID, disabled: bool) -> bool:
    """Disabling also ends every session of the user (their streams notice within seconds)."""
    status = await conn.execute(
        "UPDATE staff_users SET disabled_at = CASE WHEN $2 THEN now() END WHERE id = $1",
        user_id, disabled)
    if disabled:
        await conn.execute(
            """UPDATE staff_sessions SET revoked_at = now()
               WHERE user_id = $1 AND revoked_at IS NULL""", user_id)
    return status.endswith(" 1")


async def create_session(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID,
                         token_hash: str, hours: float) -> uuid.UUID:
    return await conn.fetchval(
        """INSERT INTO staff_sessions (tenant_id, user_id, token_hash, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id""",
        tenant_id, user_id, token_hash, hours * 3600.0)


async def revoke_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE staff_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        session_id)


async def personal_keys(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys
           WHERE user_id = $1 ORDER BY created_at""", user_id)


async def revoke_personal_key(conn: asyncpg.Connection, user_id: uuid.UUID,
                              key_id: uuid.UUID) -> bool:
    status = await conn.execute(
        """UPDATE api_keys SET revoked_at = now()
           WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL""", key_id, user_id)
    return status.endswith(" 1")


async def record_action(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID | None,
                        key_id: uuid.UUID | None, action: str, object_id: uuid.UUID | None,
                        detail: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO staff_actions (tenant_id, user_id, api_key_id, action, object_id, detail)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        tenant_id, user_id, key_id, action, object_id, detail)


async def actions(conn: asyncpg.Connection, object_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT a.action, a.detail, a.created_at, a.user_id, u.name AS user_name
           FROM staff_actions a LEFT JOIN staff_users u ON u.id = a.user_id
           WHERE a.object_id = $1 ORDER BY a.created_at""", object_id)


# ------------------------------------------------------------ inbox state


async def set_assignee(conn: asyncpg.Connection, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                       user_id: uuid.UUID | None) -> None:
    await conn.execute(
        """INSERT INTO inbox_conversations (conversation_id, tenant_id, assigned_to, assigned_at)
           VALUES ($1, $2, $3, CASE WHEN $3::uuid IS NOT NULL THEN now() END)
           ON CONFLICT (conversation_id) DO UPDATE SET assigned_to = EXCLUDED.assigned_to,
             assigned_at = EXCLUDED.assigned_at, updated_at = now()""",
        conversation_id, tenant_id, user_id)


async def set_closed(conn: asyncpg.Connection, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                     closed: bool) -> None:
    await conn.execute(
        """INSERT INTO inbox_conversations (conversation_id, tenant_id, closed_at)
           VALUES ($1, $2, CASE WHEN $3 THEN now() END)
           ON CONFLICT (conversation_id) DO UPDATE SET closed_at = EXCLUDED.closed_at,
             updated_at = now()""",
        conversation_id, tenant_id, closed)


async def mark_seen(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                    conversation_id: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO inbox_conversations (conversation_id, tenant_id, seen_at) VALUES ($1, $2, now())
           ON CONFLICT (conversation_id) DO UPDATE SET seen_at = now()""",
        conversation_id, tenant_id)


async def set_labels(conn: asyncpg.Connection, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                     labels: list[str]) -> None:
    await conn.execute(
        """INSERT INTO inbox_conversations (conversation_id, tenant_id, labels) VALUES ($1, $2, $3)
           ON CONFLICT (conversation_id) DO UPDATE SET labels = EXCLUDED.labels, updated_at = now()""",
        conversation_id, tenant_id, labels)


async def state(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT i.assigned_to, u.name AS assignee_name, i.assigned_at, i.seen_at, i.closed_at,
                  i.labels
           FROM inbox_conversations i LEFT JOIN staff_users u ON u.id = i.assigned_to
           WHERE i.conversation_id = $1""", conversation_id)


async def add_note(conn: asyncpg.Connection, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                   author_id: uuid.UUID | None, body: str) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO conversation_notes (tenant_id, conversation_id, author_id, body)
           VALUES ($1, $2, $3, $4) RETURNING id, body, author_id, created_at""",
        tenant_id, conversation_id, author_id, body)


async def notes(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT n.id, n.body, n.author_id, u.name AS author_name, n.created_at
           FROM conversation_notes n LEFT JOIN staff_users u ON u.id = n.author_id
           WHERE n.conversation_id = $1 ORDER BY n.created_at""", conversation_id)


# ------------------------------------------------------------ conversation list

# Closed by staff until the patient writes again (an inbound message after closing reopens it).
_CLOSED = """(c.status = 'closed' OR (i.closed_at IS NOT NULL
              AND (c.last_inbound_at IS NULL OR c.last_inbound_at <= i.closed_at)))"""
_ACTIVITY = "GREATEST(c.created_at, c.last_inbound_at, c.last_outbound_at)"
_FILTERS = {
    "open": f"NOT {_CLOSED}",
    "needs_human": f"NOT {_CLOSED} AND (c.status = 'escalated' OR c.needs_attention) "
                   "AND i.assigned_to IS NULL",
    "ai": f"NOT {_CLOSED} AND c.status = 'active' AND i.assigned_to IS NULL",
    "mine": f"NOT {_CLOSED} AND i.assigned_to = $1::uuid",
    "unassigned": f"NOT {_CLOSED} AND i.assigned_to IS NULL",
    "closed": _CLOSED,
    "all": "true",
}


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_conversations(
    conn: asyncpg.Connection, *, me: uuid.UUID | None, filter: str, channel: str | None,
    branch_id: uuid.UUID | None, lead_id: uuid.UUID | None, search: str | None,
    after: tuple[datetime, uuid.UUID] | None, limit: int, conversation_id: uuid.UUID | None = None,
) -> list[asyncpg.Record]:
    """Newest activity first; `after` is the (activity, id) of the previous page's last row."""
    where = _FILTERS[filter]  # a fixed fragment, chosen by a validated name
    return await conn.fetch(
        f"""SELECT c.id, c.channel, c.status, c.escalation_reason, c.needs_attention,
                   c.attention_reason, c.last_inbound_at, c.last_outbound_at, c.created_at,
                   {_ACTIVITY} AS activity,
                   l.id AS lead_id, l.name AS lead_name, l.phone, l.platform_user_id, l.score,
                   l.classification,
                   i.assigned_to, u.name AS assignee_name, COALESCE(i.labels, '{{}}') AS labels,
                   COALESCE(i.assigned_to = $1::uuid, false) AS assigned_to_me,
                   {_CLOSED} AS closed,
                   (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id
                      AND m.direction = 'inbound' AND m.sender_type = 'lead'
                      AND m.created_at > COALESCE(i.seen_at, '-infinity')) AS unread,
                   (SELECT m.content FROM messages m WHERE m.conversation_id = c.id
                    ORDER BY m.created_at DESC LIMIT 1) AS last_message
            FROM conversations c
            JOIN leads l ON l.id = c.lead_id
            LEFT JOIN inbox_conversations i ON i.conversation_id = c.id
            LEFT JOIN staff_users u ON u.id = i.assigned_to
            WHERE ({where})
              AND ($2::text IS NULL OR c.channel = $2)
              AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM appointments a
                                               WHERE a.lead_id = c.lead_id AND a.branch_id = $3))
              AND ($4::text IS NULL OR l.name ILIKE $4 OR l.phone LIKE $4
                   OR l.platform_user_id LIKE $4
                   OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id
                              AND m.content ILIKE $4))
              AND ($5::timestamptz IS NULL OR ({_ACTIVITY}, c.id) < ($5, $6::uuid))
              AND ($8::uuid IS NULL OR c.lead_id = $8)
              AND ($9::uuid IS NULL OR c.id = $9)
            ORDER BY activity DESC, c.id DESC
            LIMIT $7""",
        me, channel, branch_id, like_pattern(search) if search else None,
        after[0] if after else None, after[1] if after else None, limit, lead_id,
        conversation_id,
    )


async def unread_counts(conn: asyncpg.Connection, me: uuid.UUID | None) -> asyncpg.Record:
    """Conversations with unread patient messages, per inbox tab."""
    return await conn.fetchrow(
        f"""WITH c AS (
              SELECT c.status, c.needs_attention, i.assigned_to, {_CLOSED} AS closed,
                     EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id
                             AND m.direction = 'inbound' AND m.sender_type = 'lead'
                             AND m.created_at > COALESCE(i.seen_at, '-infinity')) AS unread
              FROM conversations c LEFT JOIN inbox_conversations i ON i.conversation_id = c.id)
            SELECT count(*) FILTER (WHERE unread AND NOT closed) AS open,
                   count(*) FILTER (WHERE NOT closed AND (status = 'escalated' OR needs_attention)
                                    AND assigned_to IS NULL) AS needs_human,
                   count(*) FILTER (WHERE unread AND NOT closed AND assigned_to = $1) AS mine
            FROM c""", me)


async def whatsapp_account(conn: asyncpg.Connection) -> str | None:
    """The tenant's first enabled WhatsApp number (outreach is sent from it)."""
    account: str | None = await conn.fetchval(
        """SELECT platform_account_id FROM channel_connections
           WHERE channel = 'whatsapp' AND enabled ORDER BY created_at LIMIT 1""")
    return account


async def open_outreach(conn: asyncpg.Connection, tenant_id: uuid.UUID, wa_id: str,
                        name: str | None, account: str) -> uuid.UUID:
    """The lead and conversation a first template goes to; existing ones are reused."""
    lead_id = await conn.fetchval(
        """INSERT INTO leads (tenant_id, channel, platform_user_id, name, phone)
           VALUES ($1, 'whatsapp', $2, $3, '+' || $2)
           ON CONFLICT (tenant_id, channel, platform_user_id)
             DO UPDATE SET name = COALESCE(leads.name, EXCLUDED.name)
           RETURNING id""", tenant_id, wa_id, name)
    return await conn.fetchval(
        """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id, status)
           VALUES ($1, $2, 'whatsapp', $3, 'human')
           ON CONFLICT (tenant_id, lead_id, channel) DO UPDATE SET updated_at = now()
           RETURNING id""", tenant_id, lead_id, account)


# ---------------------------------------------------------- canned replies, templates


async def canned_replies(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, shortcut, body FROM canned_replies ORDER BY shortcut")


async def upsert_canned_reply(conn: asyncpg.Connection, tenant_id: uuid.UUID, shortcut: str,
                              body: str) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO canned_replies (tenant_id, shortcut, body) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, shortcut) DO UPDATE SET body = EXCLUDED.body
           RETURNING id, shortcut, body""", tenant_id, shortcut, body)


async def delete_canned_reply(conn: asyncpg.Connection, reply_id: uuid.UUID) -> bool:
    return (await conn.execute("DELETE FROM canned_replies WHERE id = $1", reply_id)).endswith(" 1")


async def template_accounts(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The WhatsApp Business Accounts to sync templates from: `waba_id`, `access_token`."""
    return await conn.fetch(
        """SELECT settings->>'business_account_id' AS waba_id, access_token
           FROM channel_connections
           WHERE channel = 'whatsapp' AND enabled AND settings ? 'business_account_id'
             AND access_token IS NOT NULL""")


async def templates(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT template_id, name, language, category, status, body, params, updated_at
           FROM whatsapp_templates ORDER BY name, language""")


async def template(conn: asyncpg.Connection, name: str, language: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT template_id, name, language, category, status, body, params
           FROM whatsapp_templates WHERE name = $1 AND language = $2""", name, language)


async def upsert_template(conn: asyncpg.Connection, tenant_id: uuid.UUID, t: dict[str, Any]) -> None:
    # A template deleted and created again under its name has a new id: the new one stands.
    await conn.execute(
        "DELETE FROM whatsapp_templates WHERE name = $1 AND language = $2 AND template_id <> $3",
        t["name"], t["language"], t["template_id"])
    await conn.execute(
        """INSERT INTO whatsapp_templates (tenant_id, template_id, name, language, category, status,
                                           body, params)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (tenant_id, template_id) DO UPDATE SET name = EXCLUDED.name,
             language = EXCLUDED.language, category = EXCLUDED.category, status = EXCLUDED.status,
             body = EXCLUDED.body, params = EXCLUDED.params, updated_at = now()""",
        tenant_id, t["template_id"], t["name"], t["language"], t.get("category"), t["status"],
        t.get("body"), t.get("params", 0))



async def set_template_status(conn: asyncpg.Connection, template_id: str, status: str,
                              changed_at: datetime) -> bool:
    """The webhook's status, unless a sync stored the template after the change (whole
    seconds: the webhook's time is)."""
    done = await conn.execute(
        """UPDATE whatsapp_templates SET status = $2, updated_at = now()
           WHERE template_id = $1 AND date_trunc('second', updated_at) <= $3""",
        template_id, status, changed_at)
    return done != "UPDATE 0"
