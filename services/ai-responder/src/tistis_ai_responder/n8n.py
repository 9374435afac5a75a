"""n8n as a tenant's AI provider (`ai_tenant_context.ai_provider = 'n8n'`, the guide's legacy flow).

The AI responder, instead of calling Claude, posts the guide's `ai-conversation` event to
`{N8N_WEBHOOK_URL}/ai-conversation` and stops there: the n8n workflow answers later through the
legacy callback `POST /api/webhook` (`action: ai_response`, bearer CRON_SECRET), which the
ingress turns into an `OutboundMessage` (sender_type ai). The service reads what the body needs
(`repository.ai_conversation`) under the reply lease, builds it here, and posts it with no
connection held (`post_to_n8n` raises N8nError: the runner retries).

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
