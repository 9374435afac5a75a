"""n8n as AI provider: the guide's `ai-conversation` body, read from the database and posted to
a local stand-in of an n8n webhook node."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tistis_ai_responder import repository as repo
from tistis_ai_responder.n8n import N8nError, build_ai_conversation_payload, post_to_n8n
from tistis_common.db import conn_tenant_tx, connect, tenant_tx
from tistis_common.testing.plugin import serving_app


@asynccontextmanager
async def fake_n8n(status: int = 200) -> AsyncIterator[tuple[str, list[dict]]]:
    """An n8n webhook node: records what it got, answers `status`."""
    received: list[dict] = []
    app = FastAPI()

    @app.post("/webhook/ai-conversation")
    async def hook(request: Request):
        received.append({"headers": dict(request.headers), "body": await request.json()})
        if status != 200:
            return JSONResponse({"code": status, "message": "workflow not active"}, status_code=status)
        return {"message": "Workflow was started"}

    async with serving_app(app) as url:
        yield f"{url}/webhook", received


class TestPayload:
    def test_body_has_the_guides_shape(self):
        tenant_id, conv, lead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        body = build_ai_conversation_payload(
            tenant_id, {"id": conv, "lead_id": lead},
            [{"content": "Hola, quiero una cita", "sender_type": "lead"}],
            {"name": "Juan", "interested_services": ["limpieza"]},
            {"services": [], "faqs": []},
        )
        assert body["event"] == "ai-conversation"
        assert body["tenant_id"] == str(tenant_id)
        assert body["timestamp"].endswith("Z")
        assert body["data"] == {
            "conversation": {"id": str(conv), "lead_id": str(lead)},
            "messages": [{"content": "Hola, quiero una cita", "sender_type": "lead"}],
            "lead": {"name": "Juan", "interested_services": ["limpieza"]},
            "context": {"services": [], "faqs": []},
        }

    def test_conversation_without_ids_is_refused(self):
        with pytest.raises(ValueError):
            build_ai_conversation_payload(uuid.uuid4(), {"id": uuid.uuid4()}, [], {}, {})


class TestPostToN8n:
    async def test_conversation_from_the_database_is_posted_with_the_api_key(
        self, settings, app_pool, make_tenant
    ):
        tenant = await make_tenant()
        conn = await connect(settings.migration_database_url)
        try:
            async with conn_tenant_tx(conn, tenant.id):
                lead_id = await conn.fetchval(
                    """INSERT INTO leads (tenant_id, channel, platform_user_id, name, interested_services)
                       VALUES ($1, 'whatsapp', '5215512345678', 'Juan', '{limpieza}') RETURNING id""",
                    tenant.id)
                conv_id = await conn.fetchval(
                    """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id)
                       VALUES ($1, $2, 'whatsapp', '1') RETURNING id""", tenant.id, lead_id)
                await conn.execute(
                    """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                             sender_type, content) VALUES ($1, $2, $3, 'whatsapp',
                                             'inbound', 'lead', 'Hola, quiero una cita')""",
                    tenant.id, conv_id, lead_id)
        finally:
            await conn.close()
        async with tenant_tx(app_pool, tenant.id) as c:
            found = await repo.ai_conversation(c, tenant.id, conv_id, 20)
        payload = build_ai_conversation_payload(tenant.id, found.conversation, found.messages,
                                                found.lead, found.context)
        async with fake_n8n() as (url, received), httpx.AsyncClient() as http:
            await post_to_n8n(http, settings.model_copy(update={"n8n_webhook_url": url,
                                                                 "n8n_api_key": "n8n-key"}), payload)
        [got] = received
        assert got["headers"]["authorization"] == "Bearer n8n-key"
        body = got["body"]
        assert (body["event"], body["tenant_id"]) == ("ai-conversation", str(tenant.id))
        assert body["data"]["conversation"]["id"] == str(conv_id)
        assert body["data"]["conversation"]["lead_id"] == str(lead_id)
        assert body["data"]["messages"][0]["content"] == "Hola, quiero una cita"
        assert body["data"]["lead"]["interested_services"] == ["limpieza"]
        assert [s["name"] for s in body["data"]["context"]["services"]] == ["Limpieza dental"]
        assert body["data"]["context"]["faqs"][0]["question"] == "¿Cuál es su horario?"

    async def test_refusal_or_missing_url_raises_for_a_retry(self, settings):
        payload = build_ai_conversation_payload(uuid.uuid4(), {"id": 1, "lead_id": 2}, [], {}, {})
        async with fake_n8n(status=404) as (url, _), httpx.AsyncClient() as http:
            with pytest.raises(N8nError, match="404"):
                await post_to_n8n(http, settings.model_copy(update={"n8n_webhook_url": url}), payload)
            with pytest.raises(N8nError, match="not set"):
                await post_to_n8n(http, settings.model_copy(update={"n8n_webhook_url": None}), payload)
