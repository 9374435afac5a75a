"""Staff record how an appointment went, from the operator API and from the CLI: the scheduler
marks it `completed` or `no_show`, and a no-show gets its follow-up (`seguimiento`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tistis_cli.main import app as cli_app
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, tenant_tx
from tistis_common.testing.plugin import eventually, running
from tistis_ingress.main import start as start_ingress
from tistis_scheduler.main import start as start_scheduler
from typer.testing import CliRunner


@pytest.fixture
async def staff(settings):
    async with running(start_ingress, settings) as ingress, \
            running(start_scheduler, settings, scheduler_tick_seconds=0):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            yield http


async def booked_appointment(settings, tenant) -> tuple[str, uuid.UUID]:
    """An API key and a past appointment of a WhatsApp patient, as the scheduler booked it."""
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            _, key = await issue_api_key(conn, tenant.id, "test")
            lead_id = await conn.fetchval(
                """INSERT INTO leads (tenant_id, channel, platform_user_id, name)
                   VALUES ($1, 'whatsapp', $2, 'María') RETURNING id""",
                tenant.id, f"521{uuid.uuid4().int % 10**10:010d}")
            conv_id = await conn.fetchval(
                """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id)
                   VALUES ($1, $2, 'whatsapp', $3) RETURNING id""",
                tenant.id, lead_id, tenant.whatsapp_phone_number_id)
            branch_id = await conn.fetchval("SELECT id FROM branches WHERE tenant_id = $1", tenant.id)
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
            appointment_id = await conn.fetchval(
                """INSERT INTO appointments (tenant_id, lead_id, branch_id, conversation_id,
                                             scheduled_at, ends_at, status)
                   VALUES ($1, $2, $3, $4, $5, $6, 'booked') RETURNING id""",
                tenant.id, lead_id, branch_id, conv_id, start, start + timedelta(minutes=45))
    finally:
        await conn.close()
    return key, appointment_id


async def status_of(app_pool, tenant_id, appointment_id):
    async with tenant_tx(app_pool, tenant_id) as conn:
        return await conn.fetchval("SELECT status FROM appointments WHERE id = $1", appointment_id)


class TestOutcomeByApi:
    async def test_a_no_show_is_recorded_and_gets_the_seguimiento_follow_up(
        self, staff, settings, make_tenant, app_pool
    ):
        tenant = await make_tenant()
        key, appointment_id = await booked_appointment(settings, tenant)
        answer = await staff.post(f"/api/v1/appointments/{appointment_id}/outcome",
                                  json={"status": "no_show"},
                                  headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 202, answer.text
        await eventually(lambda: _is(app_pool, tenant.id, appointment_id, "no_show"))
        async with tenant_tx(app_pool, tenant.id) as conn:
            followup = await conn.fetchrow(
                "SELECT kind, purpose, payload FROM messages WHERE direction = 'outbound'")
        assert (followup["kind"], followup["purpose"]) == ("template", "followup")
        assert followup["payload"]["template"]["name"] == "seguimiento"

    async def test_unknown_appointment_is_404_and_a_bad_status_422(
        self, staff, settings, make_tenant
    ):
        tenant = await make_tenant()
        key, appointment_id = await booked_appointment(settings, tenant)
        auth = {"Authorization": f"Bearer {key}"}
        missing = await staff.post(f"/api/v1/appointments/{uuid.uuid4()}/outcome",
                                   json={"status": "completed"}, headers=auth)
        assert missing.status_code == 404
        bad = await staff.post(f"/api/v1/appointments/{appointment_id}/outcome",
                               json={"status": "cancelled"}, headers=auth)
        assert bad.status_code in (400, 422)


class TestOutcomeByCli:
    async def test_tistis_appointment_mark_completed(self, staff, settings, make_tenant, app_pool):
        tenant = await make_tenant()
        _, appointment_id = await booked_appointment(settings, tenant)
        env = {"DATABASE_URL": settings.database_url,
               "MIGRATION_DATABASE_URL": settings.migration_database_url,
               "RABBITMQ_URL": settings.rabbitmq_url}
        async with tenant_tx(app_pool, tenant.id) as conn:
            slug = await conn.fetchval("SELECT slug FROM tenants WHERE id = $1", tenant.id)
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["appointment", "mark", slug, str(appointment_id),
                                          "completed"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "queued completed" in result.output
        await eventually(lambda: _is(app_pool, tenant.id, appointment_id, "completed"))


async def _is(app_pool, tenant_id, appointment_id, status: str) -> bool:
    return await status_of(app_pool, tenant_id, appointment_id) == status
