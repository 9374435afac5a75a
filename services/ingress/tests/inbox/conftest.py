"""Fixtures of the inbox tests: a running ingress, and clinics with staff (an admin and an
agent with passwords, a personal API key), a WhatsApp conversation with patient messages and an
approved template, written the way their owning services write them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, scope
from tistis_common.staff import create_user, hash_password
from tistis_common.testing.plugin import TestTenant, running
from tistis_ingress.main import start as start_ingress

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD)  # once: an argon2 hash costs about half a second
# Every test logs in from 127.0.0.1, into one session database: the per-address login limit
# would count the whole session's logins (the fuzzer's too), so these ingresses lift it.
SHARED_ADDRESS = {"inbox_login_attempts_per_address_15_minutes": 1_000_000}


@dataclass(frozen=True)
class Clinic:
    tenant: TestTenant
    admin_id: uuid.UUID
    agent_id: uuid.UUID
    admin_email: str
    agent_email: str
    key: str  # the agent's personal API key
    tenant_key: str  # a tenant key from the CLI
    lead_id: uuid.UUID
    conversation_id: uuid.UUID
    wa_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
async def inbox(settings):
    """The real ingress, with a short stream re-check so that ended sessions show quickly."""
    async with running(start_ingress, settings, realtime_recheck_seconds=0.5,
                       inbox_login_attempts_per_15_minutes=3, **SHARED_ADDRESS) as runtime:
        yield runtime


@pytest.fixture
async def http(inbox):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{inbox.http_port}", timeout=10) as c:
        yield c


async def login(http: httpx.AsyncClient, clinic: Clinic, email: str | None = None) -> httpx.AsyncClient:
    """A second client with its own cookie jar, logged in."""
    client = httpx.AsyncClient(base_url=http.base_url, timeout=10,
                               headers={"X-Requested-With": "test"})
    answer = await client.post("/api/v1/auth/login", json={
        "tenant": clinic.tenant.slug, "email": email or clinic.agent_email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


@pytest.fixture
async def clinic(settings, make_tenant):
    async def make(inbound_hours_ago: float = 0.1, name: str = "María López") -> Clinic:
        tenant = await make_tenant()
        n = uuid.uuid4().hex[:8]
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                await scope(conn, tenant.id)
                admin = await create_user(conn, tenant.id, f"admin-{n}@clinic.mx", "Dra. Ruiz",
                                          "admin", PASSWORD, password_hash=PASSWORD_HASH)
                agent = await create_user(conn, tenant.id, f"agent-{n}@clinic.mx", "Laura",
                                          "agent", PASSWORD, password_hash=PASSWORD_HASH)
                _, key = await issue_api_key(conn, tenant.id, "laura's script", user_id=agent)
                _, tenant_key = await issue_api_key(conn, tenant.id, "cli")
                wa_id = f"521{uuid.uuid4().int % 10**10:010d}"
                lead_id = await conn.fetchval(
                    """INSERT INTO leads (tenant_id, channel, platform_user_id, name, phone,
                                          last_inbound_at)
                       VALUES ($1, 'whatsapp', $2, $3, $2,
                               now() - make_interval(secs => $4)) RETURNING id""",
                    tenant.id, wa_id, name, inbound_hours_ago * 3600)
                conv_id = await conn.fetchval(
                    """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                                  last_inbound_at)
                       VALUES ($1, $2, 'whatsapp', $3, now() - make_interval(secs => $4))
                       RETURNING id""",
                    tenant.id, lead_id, tenant.whatsapp_phone_number_id, inbound_hours_ago * 3600)
                for i, text in enumerate(["Hola, me duele una muela", "¿Tienen cita hoy?"]):
                    await conn.execute(
                        """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel,
                                                 direction, sender_type, content, created_at)
                           VALUES ($1, $2, $3, 'whatsapp', 'inbound', 'lead', $4,
                                   now() - make_interval(secs => $5))""",
                        tenant.id, conv_id, lead_id, text, inbound_hours_ago * 3600 - i)
                await conn.execute(
                    """INSERT INTO whatsapp_templates (tenant_id, template_id, name, language,
                                                       category, status, body, params)
                       VALUES ($1, $2, 'seguimiento_cita', 'es_MX', 'UTILITY', 'APPROVED',
                               'Hola {{1}}, ¿quieres agendar tu cita para {{2}}?', 2),
                              ($1, $3, 'promo_blanqueamiento', 'es_MX', 'MARKETING', 'PENDING',
                               'Promoción', 0)""",
                    tenant.id, f"tpl-{n}-1", f"tpl-{n}-2")
        finally:
            await conn.close()
        return Clinic(tenant, admin, agent, f"admin-{n}@clinic.mx", f"agent-{n}@clinic.mx", key,
                      tenant_key, lead_id, conv_id, wa_id)

    return make


class Outbox:
    """An exclusive queue on `tistis.events` of what the inbox publishes (commands to the
    dispatcher, conversation events), for one tenant."""

    def __init__(self, queue, tenant_id: uuid.UUID):
        self.queue = queue
        self.tenant_id = str(tenant_id)

    async def drain(self, wait: float = 0.3) -> list[dict]:
        import asyncio
        import json

        await asyncio.sleep(wait)
        got = []
        while (m := await self.queue.get(no_ack=True, fail=False)) is not None:
            event = json.loads(m.body)
            if event.get("tenant_id") == self.tenant_id:
                got.append(event)
        return got


@pytest.fixture
async def outbox(events_queue):
    queue = await events_queue("message.outbound.*", "conversation.*", "appointment.*")
    return lambda tenant_id: Outbox(queue, tenant_id)
