"""Fixtures of the operator-side HTTP tests: the real ingress, tenants with API keys, and a lead
with a conversation written the way the AI responder writes them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from tistis_common.admin import issue_api_key
from tistis_common.db import connect
from tistis_common.testing.plugin import TestTenant, running
from tistis_ingress.main import start as start_ingress

CRON_SECRET = "test-cron-secret"
# Tenants these tests made: the tap ignores events of anyone else (other modules of the session
# may leave services running on the same vhost).
OURS: set[str] = set()


@dataclass(frozen=True)
class Keyed:
    tenant: TestTenant
    key: str
    lead_id: uuid.UUID
    conversation_id: uuid.UUID
    branch_id: uuid.UUID
    platform_user_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
async def ingress(settings):
    async with running(start_ingress, settings, cron_secret=CRON_SECRET) as runtime:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.http_port}", timeout=10) as http:
            yield http


@pytest.fixture
async def keyed_tenant(settings, make_tenant):
    """A tenant with an API key, one WhatsApp lead (warm) and its conversation with 2 messages."""

    async def make(classification: str = "warm", score: int = 50) -> Keyed:
        tenant = await make_tenant()
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                _, key = await issue_api_key(conn, tenant.id, "test")
                wa_id = f"521{uuid.uuid4().int % 10**10:010d}"
                lead_id = await conn.fetchval(
                    """INSERT INTO leads (tenant_id, channel, platform_user_id, name, score, classification)
                       VALUES ($1, 'whatsapp', $2, 'María', $3, $4) RETURNING id""",
                    tenant.id, wa_id, score, classification,
                )
                conv_id = await conn.fetchval(
                    """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id)
                       VALUES ($1, $2, 'whatsapp', $3) RETURNING id""",
                    tenant.id, lead_id, tenant.whatsapp_phone_number_id,
                )
                for n, (direction, sender, text) in enumerate(
                    [("inbound", "lead", "Hola, quiero una cita"), ("outbound", "ai", "¡Claro! ¿Qué día?")]
                ):
                    await conn.execute(
                        """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                                 sender_type, content, created_at)
                           VALUES ($1, $2, $3, 'whatsapp', $4, $5, $6, now() + make_interval(secs => $7))""",
                        tenant.id, conv_id, lead_id, direction, sender, text, float(n),
                    )
                branch_id = await conn.fetchval("SELECT id FROM branches WHERE tenant_id = $1", tenant.id)
        finally:
            await conn.close()
        OURS.add(str(tenant.id))
        return Keyed(tenant, key, lead_id, conv_id, branch_id, wa_id)

    return make


class Tap:
    """An exclusive queue of the test's own on `tistis.events`: what the API published."""

    def __init__(self, queue):
        self.queue = queue

    async def events(self, count: int, timeout: float = 5.0) -> list[dict]:
        import asyncio
        import json

        got: list[dict] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < count:
            m = await self.queue.get(no_ack=True, fail=False)
            if m is not None:
                event = {"routing_key": m.routing_key, **json.loads(m.body)}
                if event.get("tenant_id") in OURS:
                    got.append(event)
                continue
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} events, got {got}")
            await asyncio.sleep(0.02)
        return got

    async def nothing(self) -> bool:
        import asyncio
        import json

        await asyncio.sleep(0.2)
        while (m := await self.queue.get(no_ack=True, fail=False)) is not None:
            if json.loads(m.body).get("tenant_id") in OURS:
                return False
        return True


@pytest.fixture
async def tap(events_queue):
    return Tap(await events_queue("message.outbound.*", "conversation.*", "lead.*",
                                  "appointment.*"))
