"""n8n as a tenant's AI provider (`ai_tenant_context.ai_provider = 'n8n'`, the guide's legacy flow).

The AI responder, instead of calling Claude, posts the guide's `ai-conversation` event to
`{N8N_WEBHOOK_URL}/ai-conversation` and stops there: the n8n workflow answers later through the
legacy callback `POST /api/webhook` (`action: ai_response`, bearer CRON_SECRET), which the
ingress turns into an `OutboundMessage` (sender_type ai). Usage from the AI responder, after it
stored the inbound message and outside any transaction:

    async with tenant_tx(pool, tenant_id) as conn:
        payload = await load_ai_conversation(conn, tenant_id, conversation_id)
    await post_to_n8n(http, settings, payload)   # raises N8nError: let the runner retry

Body (the guide's "Expected Input"):

    {"event": "ai-conversation", "timestamp": "...Z", "tenant_id": "...",
     "data": {"conversation": {"id", "lead_id", "channel", "status"},
              "messages": [{"content", "sender_type", "created_at"}],   # oldest first
              "lead": {"id", "name", "phone", "interested_services", "score", "classification"},
              "context": {"services": [...], "faqs": [...], "business_hours": {...}}}}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from tistis_common.settings import Settings

AI_CONVERSATION_PATH = "/ai-conversation"


class N8nError(Exception):
    """n8n did not take the event (not configured, refused, unreachable)."""


def _json(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if hasattr(value, "is_finite"):  # Decimal prices
        return float(value)
    return value


def build_ai_conversation_payload(
    tenant_id: uuid.UUID,
    conversation: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    lead: Mapping[str, Any],
    context: Mapping[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The guide's `ai-conversation` body, JSON-ready. `conversation` needs id and lead_id."""
    if "id" not in conversation or "lead_id" not in conversation:
        raise ValueError("conversation needs id and lead_id")
    return {
        "event": "ai-conversation",
        "timestamp": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "tenant_id": str(tenant_id),
        "data": _json({
            "conversation": dict(conversation),
            "messages": [dict(m) for m in messages],
            "lead": dict(lead),
            "context": dict(context),
        }),
    }


async def load_ai_conversation(conn: asyncpg.Connection, tenant_id: uuid.UUID,
                               conversation_id: uuid.UUID, history: int = 20) -> dict[str, Any]:
    """Reads what the body needs; `conn` must be in the tenant's scope (tenant_tx)."""
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
    return build_ai_conversation_payload(
        tenant_id, dict(conv), [dict(r) for r in rows], dict(lead) if lead else {}, context
    )


def n8n_url(settings: Settings) -> str:
    if not settings.n8n_webhook_url:
        raise N8nError("N8N_WEBHOOK_URL is not set")
    return settings.n8n_webhook_url.rstrip("/") + AI_CONVERSATION_PATH


async def post_to_n8n(http: httpx.AsyncClient, settings: Settings, payload: Mapping[str, Any],
                      timeout: float = 10.0) -> None:
    """Posts the event; N8N_API_KEY, when set, goes as a bearer token (n8n's Header Auth)."""
    headers = {"Authorization": f"Bearer {settings.n8n_api_key}"} if settings.n8n_api_key else {}
    try:
        response = await http.post(n8n_url(settings), json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise N8nError(f"n8n unreachable: {exc!r}") from exc
    if response.status_code >= 300:
        raise N8nError(f"n8n answered {response.status_code}: {response.text[:200]}")
