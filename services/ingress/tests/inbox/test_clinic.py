"""The inbox's clinic views at the real ingress: a branch's day of appointments (changes go to
the scheduler as events), the lead view with the person on every channel, new numbers written
to by template, and the reports per day and channel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tistis_common.db import connect, scope

from .conftest import login

INBOX = "/api/v1/inbox"


async def owner_sql(settings, tenant_id, *statements: tuple) -> list:
    conn = await connect(settings.migration_database_url)
    out = []
    try:
        async with conn.transaction():
            await scope(conn, tenant_id)
            for sql, *args in statements:
                out.append(await conn.fetchval(sql, *args))
    finally:
        await conn.close()
    return out


async def book(settings, c, when: datetime, status: str = "booked") -> uuid.UUID:
    [branch] = await owner_sql(settings, c.tenant.id, ("SELECT id FROM branches LIMIT 1",))
    [appointment] = await owner_sql(settings, c.tenant.id, (
        """INSERT INTO appointments (tenant_id, lead_id, branch_id, conversation_id, scheduled_at,
                                     ends_at, status)
           VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz + interval '45 minutes', $6)
           RETURNING id""",
        c.tenant.id, c.lead_id, branch, c.conversation_id, when, status))
    return appointment


class TestAppointments:
    async def test_the_day_of_a_branch_and_changes_as_events(self, http, clinic, settings, outbox):
        c = await clinic()
        out = outbox(c.tenant.id)
        # 16:00 UTC is 10:00 in Mexico City: the branch's local day.
        when = (datetime.now(UTC) + timedelta(days=3)).replace(hour=16, minute=0, second=0,
                                                               microsecond=0)
        appointment = await book(settings, c, when)
        branches = (await http.get(f"{INBOX}/branches", headers=c.auth)).json()["branches"]
        day = await http.get(f"{INBOX}/appointments", headers=c.auth, params={
            "branch_id": branches[0]["id"], "date": when.date().isoformat()})
        assert day.status_code == 200
        [row] = day.json()["appointments"]
        assert row["id"] == str(appointment) and row["lead_name"] == "María López"
        moved = await http.post(f"{INBOX}/appointments/{appointment}/reschedule", headers=c.auth,
                                json={"scheduled_at": (when + timedelta(days=1)).isoformat()})
        assert moved.status_code == 202
        cancelled = await http.post(f"{INBOX}/appointments/{appointment}/cancel", headers=c.auth)
        assert cancelled.status_code == 202
        requested = [e for e in await out.drain() if e["type"] == "appointment.requested"]
        assert [(e["action"], e["source"]) for e in requested] == [
            ("reschedule", "api"), ("cancel", "api")]

    async def test_staff_mark_completed_and_no_show_with_their_session(self, http, clinic,
                                                                        settings, outbox):
        """The operator route's outcome logic, under the browser session: the scheduler gets
        AppointmentRequested complete / no_show, and the staff action is recorded."""
        c = await clinic()
        out = outbox(c.tenant.id)
        first = await book(settings, c, datetime.now(UTC) - timedelta(hours=2))
        second = await book(settings, c, datetime.now(UTC) - timedelta(hours=1))
        session = await login(http, c)
        try:
            no_header = await session.post(f"{INBOX}/appointments/{first}/outcome",
                                           json={"status": "completed"},
                                           headers={"X-Requested-With": ""})
            assert no_header.status_code == 403  # a session write needs X-Requested-With
            done = await session.post(f"{INBOX}/appointments/{first}/outcome",
                                      json={"status": "completed"})
            missed = await session.post(f"{INBOX}/appointments/{second}/outcome",
                                        json={"status": "no_show"})
            wrong = await session.post(f"{INBOX}/appointments/{second}/outcome",
                                       json={"status": "cancelled"})
        finally:
            await session.aclose()
        assert (done.status_code, missed.status_code, wrong.status_code) == (202, 202, 422)
        requested = [e for e in await out.drain() if e["type"] == "appointment.requested"]
        assert sorted((e["appointment_id"], e["action"], e["source"]) for e in requested) == sorted(
            [(str(first), "complete", "api"), (str(second), "no_show", "api")])
        actions = await owner_sql(settings, c.tenant.id, (
            """SELECT array_agg(action || ':' || object_id::text || ':' || user_id::text
                                ORDER BY created_at)
               FROM staff_actions WHERE action LIKE 'appointment.%'""",))
        assert actions[0] == [f"appointment.completed:{first}:{c.agent_id}",
                              f"appointment.no_show:{second}:{c.agent_id}"]

    async def test_a_cancelled_appointment_cannot_move(self, http, clinic, settings):
        c = await clinic()
        appointment = await book(settings, c, datetime.now(UTC) + timedelta(days=2), "cancelled")
        answer = await http.post(f"{INBOX}/appointments/{appointment}/cancel", headers=c.auth)
        assert answer.status_code == 409


class TestLeads:
    async def test_the_same_phone_on_two_channels_is_one_person(self, http, clinic, settings):
        c = await clinic()
        [ig_lead] = await owner_sql(settings, c.tenant.id, (
            """INSERT INTO leads (tenant_id, channel, platform_user_id, name, phone, score)
               VALUES ($1, 'instagram', 'ig-123', 'mari.lopez', $2, 30) RETURNING id""",
            c.tenant.id, f"+{c.wa_id[:2]} {c.wa_id[2:]}"))
        view = (await http.get(f"{INBOX}/leads/{c.lead_id}", headers=c.auth)).json()
        assert {lead["id"] for lead in view["leads"]} == {str(c.lead_id), str(ig_lead)}
        assert view["conversations"][0]["id"] == str(c.conversation_id)

    async def test_a_lead_merged_by_hand_joins_the_person(self, http, clinic, settings):
        c = await clinic()
        [tiktok] = await owner_sql(settings, c.tenant.id, (
            """INSERT INTO leads (tenant_id, channel, platform_user_id, name)
               VALUES ($1, 'tiktok', 'tt-user-9', 'marilo') RETURNING id""", c.tenant.id))
        merged = await http.post(f"{INBOX}/leads/{c.lead_id}/merge", headers=c.auth,
                                 json={"lead_id": str(tiktok)})
        assert merged.status_code == 200
        for seen_from in (c.lead_id, tiktok):
            view = (await http.get(f"{INBOX}/leads/{seen_from}", headers=c.auth)).json()
            assert {lead["id"] for lead in view["leads"]} == {str(c.lead_id), str(tiktok)}


class TestOutreach:
    async def test_a_new_number_gets_an_approved_template(self, http, clinic, outbox):
        c = await clinic()
        out = outbox(c.tenant.id)
        answer = await http.post(f"{INBOX}/outreach", headers=c.auth, json={
            "phone": "+52 55 1234 9999", "name": "Jorge",
            "template": {"name": "seguimiento_cita", "params": ["Jorge", "el lunes"]}})
        assert answer.status_code == 202
        [outbound] = [e for e in await out.drain() if e["type"] == "message.outbound"]
        assert outbound["recipient_id"] == "525512349999" and outbound["kind"] == "template"
        mine = (await http.get(f"{INBOX}/conversations", params={"filter": "mine"},
                               headers=c.auth)).json()["conversations"]
        assert [(x["lead_name"], x["status"]) for x in mine] == [("Jorge", "human")]


class TestReports:
    async def test_per_day_and_channel(self, http, clinic, settings):
        c = await clinic()
        await owner_sql(settings, c.tenant.id, (
            """INSERT INTO messages (tenant_id, conversation_id, lead_id, channel, direction,
                                     sender_type, content, status, fallback, created_at)
               SELECT $1, $2, $3, 'whatsapp', 'outbound', s, 'x', 'sent', f,
                      now() - interval '5 minutes' + make_interval(secs => n)
               FROM (VALUES ('ai', false, 1), ('ai', true, 2), ('agent', false, 3)) v(s, f, n)
               RETURNING 1""", c.tenant.id, c.conversation_id, c.lead_id),
            ("""UPDATE conversations SET status = 'escalated', escalation_reason = 'keyword: urgent',
                  escalated_at = now() WHERE id = $1""", c.conversation_id))
        report = (await http.get(f"{INBOX}/reports", headers=c.auth)).json()
        [row] = [r for r in report["rows"] if r["channel"] == "whatsapp"]
        assert row["conversations"] == 1
        assert (row["by_ai"], row["by_fallback"], row["by_staff"]) == (1, 1, 1)
        assert row["share_staff"] == round(1 / 3, 4)
        assert row["escalations"] == {"keyword: urgent": 1}
        assert row["first_response_p50"] is not None and row["first_response_p50"] > 0
