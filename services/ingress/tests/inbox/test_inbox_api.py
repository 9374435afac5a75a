"""The inbox API at the real ingress, PostgreSQL and RabbitMQ: staff log in, find, take, answer
and hand back conversations; nothing of one clinic reaches another clinic's staff or keys."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from tistis_common.admin import load_tenant, read_fixture
from tistis_common.db import connect, scope
from tistis_common.secrets import SecretBox

from .conftest import PASSWORD, login

CONV = "/api/v1/inbox/conversations"
ROOT = Path(__file__).resolve().parents[4]


def demo_files() -> tuple[str, dict]:
    """What `make run` prints, and the demo tenant it seeds."""
    return ((ROOT / "scripts" / "run.sh").read_text(encoding="utf-8"),
            read_fixture(ROOT / "fixtures" / "esva-dental.yaml"))


class TestLogin:
    async def test_login_sets_an_httponly_session_cookie(self, http, clinic):
        c = await clinic()
        answer = await http.post("/api/v1/auth/login", json={
            "tenant": c.tenant.slug, "email": c.agent_email.upper(), "password": PASSWORD})
        assert answer.status_code == 200
        assert answer.json()["user"]["name"] == "Laura"
        assert answer.json()["role"] == "agent"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie

    @pytest.mark.parametrize("field", ["tenant", "email", "password"])
    async def test_a_wrong_field_is_the_same_401(self, http, clinic, field):
        c = await clinic()
        body = {"tenant": c.tenant.slug, "email": c.agent_email, "password": PASSWORD}
        body[field] = {"tenant": "no-such-clinic", "email": "nobody@x.mx", "password": "nope"}[field]
        answer = await http.post("/api/v1/auth/login", json=body)
        assert answer.status_code == 401
        assert answer.json()["detail"] == "wrong tenant, email or password"

    async def test_login_attempts_are_limited_per_email(self, http, clinic, inbox):
        c = await clinic()
        limit = inbox.settings.inbox_login_attempts_per_15_minutes
        body = {"tenant": c.tenant.slug, "email": c.admin_email, "password": "wrong"}
        codes = [(await http.post("/api/v1/auth/login", json=body)).status_code
                 for _ in range(limit + 1)]
        assert codes[:-1] == [401] * limit
        assert codes[-1] == 429
        # Even the right password waits now: the counter is in the database, for every replica.
        right = await http.post("/api/v1/auth/login", json={**body, "password": PASSWORD})
        assert right.status_code == 429
        assert int(right.headers["retry-after"]) > 0

    async def test_a_cookie_write_without_x_requested_with_is_403(self, http, clinic):
        c = await clinic()
        browser = await login(http, c)
        try:
            del browser.headers["X-Requested-With"]
            answer = await browser.post(f"{CONV}/{c.conversation_id}/take")
            assert answer.status_code == 403
        finally:
            await browser.aclose()

    async def test_logout_ends_the_session(self, http, clinic):
        c = await clinic()
        browser = await login(http, c)
        try:
            assert (await browser.get("/api/v1/me")).status_code == 200
            assert (await browser.post("/api/v1/auth/logout")).status_code == 204
            browser.cookies.clear()
            # the old cookie value, replayed, is dead too
        finally:
            await browser.aclose()

    async def test_a_disabled_user_loses_session_and_personal_key(self, http, clinic):
        c = await clinic()
        agent = await login(http, c)
        admin = await login(http, c, c.admin_email)
        try:
            token = agent.cookies.get("tistis_session")
            answer = await admin.post(f"/api/v1/staff/users/{c.agent_id}/disable")
            assert answer.status_code == 200 and answer.json()["disabled_at"]
            replay = await http.get("/api/v1/me", cookies={"tistis_session": token})
            assert replay.status_code == 401
            assert (await http.get("/api/v1/me", headers=c.auth)).status_code == 401
            assert (await http.get("/api/v1/integrations", headers=c.auth)).status_code == 401
        finally:
            await agent.aclose()
            await admin.aclose()

    async def test_an_agent_cannot_manage_users(self, http, clinic):
        c = await clinic()
        answer = await http.post(f"/api/v1/staff/users/{c.admin_id}/disable", headers=c.auth)
        assert answer.status_code == 403


class TestStreams:
    async def test_the_browser_stream_authenticates_with_the_cookie_and_ends_at_logout(
            self, http, clinic):
        c = await clinic()
        browser = await login(http, c)
        try:
            async with browser.stream("GET", "/api/v1/events/stream") as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                assert await anext(lines) == "retry: 1000"
                other = await login(http, c)  # the same user elsewhere logs this session out?
                await other.aclose()
                token = browser.cookies.get("tistis_session")
                logout = await http.post("/api/v1/auth/logout",
                                         cookies={"tistis_session": token},
                                         headers={"X-Requested-With": "test"})
                assert logout.status_code == 204

                async def until_closed() -> None:
                    async for _ in lines:
                        pass

                await asyncio.wait_for(until_closed(), timeout=5)
        finally:
            await browser.aclose()

    async def test_a_disabled_users_key_stream_ends(self, http, clinic):
        c = await clinic()
        async with http.stream("GET", "/api/v1/events/stream", headers=c.auth) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            await anext(lines)
            disable = await http.post(f"/api/v1/staff/users/{c.agent_id}/disable",
                                      headers={"Authorization": f"Bearer {c.tenant_key}"})
            assert disable.status_code == 200

            async def until_closed() -> None:
                async for _ in lines:
                    pass

            await asyncio.wait_for(until_closed(), timeout=5)


class TestConversations:
    async def test_list_with_unread_counts_and_search(self, http, clinic):
        c = await clinic(name="Rosa Martínez")
        page = (await http.get(CONV, headers=c.auth)).json()
        [conv] = page["conversations"]
        assert conv["id"] == str(c.conversation_id)
        assert conv["unread"] == 2 and conv["window_open"] is True
        assert conv["last_message"] == "¿Tienen cita hoy?"
        assert page["unread"]["open"] == 1
        for q in ("rosa", c.wa_id[-6:], "muela"):
            found = (await http.get(CONV, params={"q": q}, headers=c.auth)).json()
            assert [x["id"] for x in found["conversations"]] == [str(c.conversation_id)], q
        none = (await http.get(CONV, params={"q": "ortodoncia%"}, headers=c.auth)).json()
        assert none["conversations"] == []
        await http.post(f"{CONV}/{c.conversation_id}/seen", headers=c.auth)
        assert (await http.get(CONV, headers=c.auth)).json()["conversations"][0]["unread"] == 0

    async def test_cursor_pagination_visits_each_conversation_once(self, http, clinic, settings):
        from tistis_common.db import connect

        c = await clinic()
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                await scope(conn, c.tenant.id)
                for i in range(6):
                    lead = await conn.fetchval(
                        """INSERT INTO leads (tenant_id, channel, platform_user_id, name)
                           VALUES ($1, 'instagram', $2, $3) RETURNING id""",
                        c.tenant.id, f"ig-{i}", f"P{i}")
                    await conn.execute(
                        """INSERT INTO conversations (tenant_id, lead_id, channel, platform_account_id,
                                                      created_at)
                           VALUES ($1, $2, 'instagram', 'x', now() - interval '1 day')""",
                        c.tenant.id, lead)  # the same activity time for all: ties break by id
        finally:
            await conn.close()
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get(CONV, params=params, headers=c.auth)).json()
            seen += [x["id"] for x in page["conversations"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 7 == len(set(seen))
        only_ig = (await http.get(CONV, params={"channel": "instagram"}, headers=c.auth)).json()
        assert len(only_ig["conversations"]) == 6

    async def test_take_reply_and_hand_back_record_who(self, http, clinic, outbox):
        c = await clinic()
        out = outbox(c.tenant.id)
        take = await http.post(f"{CONV}/{c.conversation_id}/take", headers=c.auth)
        assert take.status_code == 200
        reply = await http.post(f"{CONV}/{c.conversation_id}/reply", headers=c.auth,
                                json={"text": "Hola María, soy Laura de la clínica"})
        assert reply.status_code == 202
        back = await http.post(f"{CONV}/{c.conversation_id}/handback", headers=c.auth)
        assert back.status_code == 200
        events = await out.drain()
        assert [e["type"] for e in events] == [
            "conversation.escalated", "message.outbound", "conversation.released"]
        assert events[0]["source"] == "agent"
        assert events[1]["sender_type"] == "agent" and events[1]["text"].startswith("Hola María")
        detail = (await http.get(f"{CONV}/{c.conversation_id}", headers=c.auth)).json()
        assert [(a["action"], a["user_name"]) for a in detail["actions"]] == [
            ("conversation.taken", "Laura"), ("message.sent", "Laura"),
            ("conversation.handed_back", "Laura")]
        assert detail["conversation"]["assigned_to"] is None

    async def test_outside_the_window_text_is_409_and_an_approved_template_goes(
            self, http, clinic, outbox):
        c = await clinic(inbound_hours_ago=30)
        out = outbox(c.tenant.id)
        conv = (await http.get(f"{CONV}/{c.conversation_id}", headers=c.auth)).json()
        assert conv["conversation"]["window_open"] is False
        text = await http.post(f"{CONV}/{c.conversation_id}/reply", headers=c.auth,
                               json={"text": "hola"})
        assert text.status_code == 409
        pending = await http.post(f"{CONV}/{c.conversation_id}/template", headers=c.auth,
                                  json={"name": "promo_blanqueamiento", "params": []})
        assert pending.status_code == 409
        wrong = await http.post(f"{CONV}/{c.conversation_id}/template", headers=c.auth,
                                json={"name": "seguimiento_cita", "params": ["María"]})
        assert wrong.status_code == 409
        sent = await http.post(f"{CONV}/{c.conversation_id}/template", headers=c.auth,
                               json={"name": "seguimiento_cita", "params": ["María", "mañana"]})
        assert sent.status_code == 202
        [outbound] = [e for e in await out.drain() if e["type"] == "message.outbound"]
        assert outbound["kind"] == "template"
        assert outbound["template"] == {"name": "seguimiento_cita", "language": "es_MX",
                                        "body_params": ["María", "mañana"], "button_payloads": []}
        assert outbound["text"] == "Hola María, ¿quieres agendar tu cita para mañana?"

    async def test_assign_close_reopen_notes_labels_and_filters(self, http, clinic):
        c = await clinic()
        admin = {"Authorization": f"Bearer {c.tenant_key}"}
        url = f"{CONV}/{c.conversation_id}"
        assert (await http.post(f"{url}/assign", headers=admin,
                                json={"user_id": str(c.agent_id)})).status_code == 200
        mine = (await http.get(CONV, params={"filter": "mine"}, headers=c.auth)).json()
        assert len(mine["conversations"]) == 1
        unassigned = (await http.get(CONV, params={"filter": "unassigned"}, headers=c.auth)).json()
        assert unassigned["conversations"] == []
        note = await http.post(f"{url}/notes", headers=c.auth, json={"body": "Paciente nerviosa"})
        assert note.status_code == 201
        assert (await http.put(f"{url}/labels", headers=c.auth,
                               json={"labels": ["Urgente", "urgente", "muela"]})).status_code == 200
        assert (await http.post(f"{url}/close", headers=c.auth)).status_code == 200
        closed = (await http.get(CONV, params={"filter": "closed"}, headers=c.auth)).json()
        assert closed["conversations"][0]["labels"] == ["muela", "urgente"]
        assert (await http.get(CONV, headers=c.auth)).json()["conversations"] == []
        assert (await http.post(f"{url}/reopen", headers=c.auth)).status_code == 200
        detail = (await http.get(url, headers=c.auth)).json()
        assert detail["notes"][0]["body"] == "Paciente nerviosa"
        assert detail["notes"][0]["author_name"] == "Laura"
        assert detail["conversation"]["closed"] is False

    async def test_canned_replies_per_tenant(self, http, clinic):
        c = await clinic()
        saved = await http.post("/api/v1/inbox/canned-replies", headers=c.auth,
                                json={"shortcut": "horario", "body": "De 9 a 18 h"})
        assert saved.status_code == 201
        listed = (await http.get("/api/v1/inbox/canned-replies", headers=c.auth)).json()
        assert [r["shortcut"] for r in listed["replies"]] == ["horario"]
        other = await clinic()
        assert (await http.get("/api/v1/inbox/canned-replies",
                               headers=other.auth)).json()["replies"] == []

    async def test_personal_keys_record_last_use(self, http, clinic):
        c = await clinic()
        browser = await login(http, c)
        try:
            issued = (await browser.post("/api/v1/staff/me/keys", json={"name": "n8n"})).json()
            me = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {issued['key']}"})
            assert me.json()["user"]["id"] == str(c.agent_id) and me.json()["via"] == "key"
            keys = (await browser.get("/api/v1/staff/me/keys")).json()["keys"]
            used = {k["id"]: k["last_used_at"] for k in keys}
            assert used[str(issued["id"])] is not None
            assert (await browser.delete(f"/api/v1/staff/me/keys/{issued['id']}")).status_code == 204
            assert (await http.get("/api/v1/me", headers={
                "Authorization": f"Bearer {issued['key']}"})).status_code == 401
        finally:
            await browser.aclose()


class TestMessengerWindow:
    async def test_staff_may_answer_messenger_for_7_days_then_not(self, http, clinic, settings,
                                                                   outbox):
        c = await clinic()
        out = outbox(c.tenant.id)
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                await scope(conn, c.tenant.id)
                ids = {}
                for days in (3, 8):
                    lead = await conn.fetchval(
                        """INSERT INTO leads (tenant_id, channel, platform_user_id, name)
                           VALUES ($1, 'facebook', $2, 'Ana') RETURNING id""",
                        c.tenant.id, f"psid-{days}")
                    ids[days] = await conn.fetchval(
                        """INSERT INTO conversations (tenant_id, lead_id, channel,
                                                      platform_account_id, last_inbound_at)
                           VALUES ($1, $2, 'facebook', $3, now() - make_interval(days => $4))
                           RETURNING id""", c.tenant.id, lead, c.tenant.page_id, days)
        finally:
            await conn.close()
        # Within 7 days a staff message may go (the dispatcher tags it HUMAN_AGENT).
        ok = await http.post(f"{CONV}/{ids[3]}/reply", headers=c.auth, json={"text": "Hola Ana"})
        assert ok.status_code == 202
        late = await http.post(f"{CONV}/{ids[8]}/reply", headers=c.auth, json={"text": "Hola"})
        assert late.status_code == 409
        [outbound] = [e for e in await out.drain() if e["type"] == "message.outbound"]
        assert (outbound["channel"], outbound["sender_type"]) == ("facebook", "agent")


class TestDemo:
    async def test_the_login_make_run_prints_opens_the_demo_clinic(self, http, settings):
        """scripts/run.sh prints the inbox URL and a login; fixtures/esva-dental.yaml makes it."""
        printed, doc = demo_files()
        assert "http://127.0.0.1:8000/inbox" in printed
        found = re.search(r"clinic (\S+), (\S+) / (\S+)", printed)
        assert found is not None
        slug, email, password = found.groups()
        conn = await connect(settings.migration_database_url)
        try:
            await load_tenant(conn, doc, SecretBox(settings.secrets_keys))
        finally:
            await conn.close()
        answer = await http.post("/api/v1/auth/login",
                                 json={"tenant": slug, "email": email, "password": password})
        assert answer.status_code == 200
        assert answer.json()["tenant_name"] == "ESVA Dental"
        page = await http.get("/inbox", cookies=answer.cookies)
        assert page.status_code == 200 and 'id="inbox-page"' in page.text


class TestKeyExpiry:
    async def test_an_expired_personal_key_is_refused_like_a_tenant_key(self, http, clinic,
                                                                        settings):
        from datetime import UTC, datetime, timedelta

        from tistis_common.admin import issue_api_key

        c = await clinic()
        conn = await connect(settings.migration_database_url)
        try:
            async with conn.transaction():
                _, key = await issue_api_key(conn, c.tenant.id, "old", datetime.now(UTC) - timedelta(
                    minutes=1), user_id=c.agent_id)
        finally:
            await conn.close()
        assert (await http.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
                ).status_code == 401
