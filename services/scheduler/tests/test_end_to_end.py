"""An appointment request as the AI responder publishes it ends with a booked row and the
`cita_confirmada` template at the fake WhatsApp Cloud API: scheduler -> RabbitMQ -> dispatcher
-> sandbox, on a vhost of this module's own (so that no other module's dispatcher takes the
messages), with the scheduler's clock at the real now (the dispatcher judges windows by it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from tistis_common.events import AppointmentRequested
from tistis_common.settings import Settings
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_sandbox import AsyncSandboxClient, running_sandbox
from tistis_scheduler.main import start as start_scheduler
from tistis_scheduler.spanish import fecha

CDMX = ZoneInfo("America/Mexico_City")


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with running_sandbox() as url:
        yield url


@pytest.fixture(scope="module")
async def own_settings(settings: Settings, sandbox_url: str) -> AsyncIterator[Settings]:
    async with own_vhost(settings) as own:
        yield own.model_copy(update={
            "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
            "scheduler_tick_seconds": 0,
        })


def next_weekday(after: date) -> date:
    day = after + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


async def test_requested_appointment_is_booked_and_confirmed_at_the_fake_whatsapp(
    own_settings, sandbox_url, make_tenant, rows
):
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = await make_tenant()
    p = await rows.patient(tenant, last_inbound_at=now)
    day = next_weekday(now.astimezone(CDMX).date())
    async with AsyncSandboxClient(sandbox_url) as sandbox, \
            running(start_dispatcher, own_settings), \
            running(partial(start_scheduler, now=lambda: now), own_settings) as scheduler:
        await sandbox.reset()
        await scheduler.publisher.publish(AppointmentRequested(
            tenant_id=tenant.id, lead_id=p.lead_id, conversation_id=p.conversation_id,
            service_name="limpieza", preferred_dates=[day.isoformat()], source="ai"))
        [sent] = await sandbox.wait_for("whatsapp", recipient=p.platform_user_id, within=15)
        message_id = await rows.val(tenant.id, "SELECT id FROM messages WHERE purpose = 'confirmation'")
        await eventually(lambda: rows.val(
            tenant.id, "SELECT status = 'sent' FROM messages WHERE id = $1", message_id))
    body = sent["json"]
    assert body["type"] == "template" and body["template"]["name"] == "cita_confirmada"
    params = [prm["text"] for c in body["template"]["components"] if c["type"] == "body"
              for prm in c["parameters"]]
    assert params == ["María García", fecha(datetime.combine(day, datetime.min.time())), "09:00", "Centro"]
    scheduled = await rows.val(tenant.id, "SELECT scheduled_at FROM appointments WHERE status = 'booked'")
    assert scheduled.astimezone(CDMX).date() == day and scheduled.astimezone(CDMX).hour == 9


async def test_request_outside_hours_reaches_the_patient_as_a_whatsapp_list(
    own_settings, sandbox_url, make_tenant, rows
):
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = await make_tenant()
    p = await rows.patient(tenant, last_inbound_at=now)
    sunday = now.astimezone(CDMX).date() + timedelta(days=(6 - now.astimezone(CDMX).weekday()) or 7)
    async with AsyncSandboxClient(sandbox_url) as sandbox, \
            running(start_dispatcher, own_settings), \
            running(partial(start_scheduler, now=lambda: now), own_settings) as scheduler:
        await sandbox.reset()
        await scheduler.publisher.publish(AppointmentRequested(
            tenant_id=tenant.id, lead_id=p.lead_id, preferred_dates=[sunday.isoformat()]))
        [sent] = await sandbox.wait_for("whatsapp", recipient=p.platform_user_id, within=15)
    interactive = sent["json"]["interactive"]
    assert interactive["type"] == "list"
    row_ids = [r["id"] for s in interactive["action"]["sections"] for r in s["rows"]]
    assert row_ids and all(r.startswith("slot:") for r in row_ids)
    assert await rows.val(tenant.id, "SELECT count(*) FROM appointments") == 0


async def test_instagram_offer_reaches_the_fake_graph_api_as_quick_replies(
    own_settings, sandbox_url, make_tenant, rows
):
    now = datetime.now(UTC).replace(microsecond=0)
    tenant = await make_tenant()
    p = await rows.patient(tenant, channel="instagram", last_inbound_at=now)
    sunday = now.astimezone(CDMX).date() + timedelta(days=(6 - now.astimezone(CDMX).weekday()) or 7)
    async with AsyncSandboxClient(sandbox_url) as sandbox, \
            running(start_dispatcher, own_settings), \
            running(partial(start_scheduler, now=lambda: now), own_settings) as scheduler:
        await sandbox.reset()
        await scheduler.publisher.publish(AppointmentRequested(
            tenant_id=tenant.id, lead_id=p.lead_id, preferred_dates=[sunday.isoformat()]))
        [sent] = await sandbox.wait_for("graph", recipient=p.platform_user_id, within=15)
    message = sent["json"]["message"]
    assert message["text"].endswith("Elige el horario que prefieras.")
    assert [q["payload"][:5] for q in message["quick_replies"]] == ["slot:"] * 5
