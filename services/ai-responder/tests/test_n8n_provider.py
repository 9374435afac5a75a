"""A tenant whose AI provider is n8n: the responder posts the guide's `ai-conversation` event
once (a redelivery does not post again) and sends no reply of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from tistis_ai_responder.main import start
from tistis_common.testing.plugin import eventually, running, serving_app


@asynccontextmanager
async def fake_n8n() -> AsyncIterator[tuple[str, list[dict]]]:
    """An n8n webhook node that records the bodies it gets."""
    received: list[dict] = []
    app = FastAPI()

    @app.post("/webhook/ai-conversation")
    async def hook(request: Request) -> dict:
        received.append(await request.json())
        return {"message": "Workflow was started"}

    async with serving_app(app) as url:
        yield f"{url}/webhook", received


class TestN8nProvider:
    async def test_n8n_tenant_is_posted_once_and_gets_no_reply_from_the_responder(
        self, settings, ai_settings, bus, sandbox, make_tenant, patient_message
    ):
        tenant = await make_tenant({"ai_context": {"ai_provider": "n8n"}})
        inbound = patient_message(tenant, "Hola, quiero una cita")
        async with fake_n8n() as (url, received), \
                running(start, settings, **{**ai_settings, "n8n_webhook_url": url}):
            await bus.publish(inbound)
            await eventually(lambda: asyncio.sleep(0, received))
            await bus.publish(inbound)  # redelivered
            await asyncio.sleep(0.6)
        assert len(received) == 1
        body = received[0]
        assert body["event"] == "ai-conversation" and body["tenant_id"] == str(tenant.id)
        assert body["data"]["messages"][-1]["content"] == "Hola, quiero una cita"
        assert await bus.events(tenant.id, "message.outbound") == []
        assert await sandbox.requests("anthropic") == []
