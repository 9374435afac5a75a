"""Nothing crosses between clinics: every inbox route, called by another clinic's staff (with
their session cookie and with their personal API key) on this clinic's ids, answers 404 or
leaves this clinic's data out. A route added without a case here fails the coverage test."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from tistis_common.storage import open_store
from tistis_ingress.openapi import DOCUMENT

from .conftest import PASSWORD, login
from .test_clinic import book
from .test_files import a_patient_photo

INBOX = "/api/v1/inbox"

# (method, path) -> who answers what when clinic B uses clinic A's ids
CROSSING = [
    ("GET", "/api/v1/inbox/conversations/{conversation_id}", None),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/seen", None),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/take", None),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/assign", {"user_id": None}),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/close", None),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/reopen", None),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/handback", None),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/reply", {"text": "hola"}),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/template",
     {"name": "seguimiento_cita", "params": ["a", "b"]}),
    ("POST", "/api/v1/inbox/conversations/{conversation_id}/notes", {"body": "x"}),
    ("PUT", "/api/v1/inbox/conversations/{conversation_id}/labels", {"labels": ["x"]}),
    ("DELETE", "/api/v1/inbox/canned-replies/{reply_id}", None),
    ("POST", "/api/v1/inbox/appointments/{appointment_id}/reschedule",
     {"scheduled_at": "2030-01-07T16:00:00+00:00"}),
    ("POST", "/api/v1/inbox/appointments/{appointment_id}/cancel", None),
    ("POST", "/api/v1/inbox/appointments/{appointment_id}/outcome", {"status": "no_show"}),
    ("GET", "/api/v1/inbox/messages/{message_id}/media", None),
    ("GET", "/api/v1/inbox/leads/{lead_id}", None),
    ("POST", "/api/v1/inbox/leads/{lead_id}/merge", "own-lead"),
    ("POST", "/api/v1/staff/users/{user_id}/disable", None),
    ("POST", "/api/v1/staff/users/{user_id}/enable", None),
    ("DELETE", "/api/v1/staff/me/keys/{key_id}", None),
]
# Routes without another clinic's id in the path: checked one by one below.
OWN = {
    ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/me"),
    ("GET", "/api/v1/staff/users"), ("POST", "/api/v1/staff/users"),
    ("GET", "/api/v1/staff/me/keys"), ("POST", "/api/v1/staff/me/keys"),
    ("GET", "/api/v1/inbox/conversations"), ("GET", "/api/v1/inbox/canned-replies"),
    ("POST", "/api/v1/inbox/canned-replies"), ("GET", "/api/v1/inbox/templates"),
    ("POST", "/api/v1/inbox/templates/sync"), ("POST", "/api/v1/inbox/outreach"),
    ("GET", "/api/v1/inbox/branches"), ("GET", "/api/v1/inbox/appointments"),
    ("GET", "/api/v1/inbox/reports"), ("GET", "/api/v1/events/stream"),
}


def test_every_staff_route_has_a_crossing_case():
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    routes = {(method.upper(), path) for path, ops in document["paths"].items()
              for method in ops
              if path == "/api/v1/me"  # not /api/v1/media or /api/v1/messages (the tenant key's)
              or path.startswith(("/api/v1/inbox/", "/api/v1/staff/", "/api/v1/auth/"))}
    covered = {(m, p) for m, p, _ in CROSSING} | OWN
    assert routes - covered == set()


@pytest.fixture
async def two_clinics(http, inbox, clinic, settings):
    a, b = await clinic(), await clinic()
    store = await open_store(inbox.settings)
    try:
        photo = await a_patient_photo(settings, store, a)
    finally:
        await store.close()
    when = datetime.now(UTC) + timedelta(days=2)
    appointment = await book(settings, a, when)
    reply = (await http.post(f"{INBOX}/canned-replies", headers=a.auth,
                             json={"shortcut": "hola", "body": "Hola"})).json()
    issued = (await http.post("/api/v1/staff/me/keys", headers=a.auth, json={"name": "x"})).json()
    ids = {"conversation_id": a.conversation_id, "appointment_id": appointment,
           "reply_id": reply["id"], "message_id": photo, "lead_id": a.lead_id, "user_id": a.agent_id,
           "key_id": issued["id"]}
    return a, b, ids


@pytest.fixture(params=["key", "session"])
async def as_b(request, http, two_clinics):
    """Clinic B's admin, by personal key or by browser session."""
    a, b, ids = two_clinics
    if request.param == "key":
        key = (await http.post("/api/v1/staff/me/keys", json={"name": "b"},
                               headers={"Authorization": f"Bearer {b.tenant_key}"}))
        # a tenant key has no person: B's admin logs in and makes their own
        admin = await login(http, b, b.admin_email)
        try:
            issued = (await admin.post("/api/v1/staff/me/keys", json={"name": "b"})).json()
        finally:
            await admin.aclose()
        assert key.status_code == 403
        client = http
        headers = {"Authorization": f"Bearer {issued['key']}"}
        yield a, b, ids, client, headers
    else:
        client = await login(http, b, b.admin_email)
        try:
            yield a, b, ids, client, {}
        finally:
            await client.aclose()


async def test_another_clinics_ids_are_not_found(as_b):
    _a, b, ids, client, headers = as_b
    answers = {}
    for method, path, body in CROSSING:
        if body == "own-lead":
            body = {"lead_id": str(b.lead_id)}
        answer = await client.request(method, path.format(**ids), headers=headers,
                                      json=body if body is not None else None)
        answers[f"{method} {path}"] = answer.status_code
    assert answers == {f"{m} {p}": 404 for m, p, _ in CROSSING}


async def test_own_routes_show_nothing_of_another_clinic(as_b, http):
    a, b, ids, client, headers = as_b
    get = lambda path, **params: client.get(path, headers=headers, params=params)  # noqa: E731
    me = (await get("/api/v1/me")).json()
    assert me["tenant_id"] == str(b.tenant.id)
    users = {u["id"] for u in (await get("/api/v1/staff/users")).json()["users"]}
    assert str(a.agent_id) not in users and str(b.agent_id) in users
    keys = {k["id"] for k in (await get("/api/v1/staff/me/keys")).json()["keys"]}
    assert str(ids["key_id"]) not in keys
    for params in ({}, {"filter": "all"}, {"q": "María"}, {"lead_id": str(a.lead_id)}):
        listed = (await get(f"{INBOX}/conversations", **params)).json()["conversations"]
        assert str(a.conversation_id) not in {c["id"] for c in listed}, params
    assert (await get(f"{INBOX}/canned-replies")).json()["replies"] == []
    templates = (await get(f"{INBOX}/templates")).json()["templates"]
    assert all(t["template_id"].split("-")[1] == b.agent_email.split("-")[1].split("@")[0]
               for t in templates)
    a_branch = (await http.get(f"{INBOX}/branches", headers=a.auth)).json()["branches"][0]["id"]
    b_branches = {x["id"] for x in (await get(f"{INBOX}/branches")).json()["branches"]}
    assert a_branch not in b_branches
    day = await get(f"{INBOX}/appointments", branch_id=a_branch, date="2030-01-07")
    assert day.status_code == 404
    report = (await get(f"{INBOX}/reports")).json()
    assert sum(r["conversations"] for r in report["rows"]) == 1  # B's own one only
    # A new user, a canned reply, an outreach and a sync of B's stay B's.
    made = await client.post("/api/v1/staff/users", headers=headers, json={
        "email": f"new-{uuid.uuid4().hex[:6]}@b.mx", "name": "Nuevo", "password": PASSWORD})
    assert made.status_code == 201
    a_users = {u["id"] for u in (await http.get("/api/v1/staff/users", headers=a.auth)).json()["users"]}
    assert made.json()["id"] not in a_users
    await client.post(f"{INBOX}/canned-replies", headers=headers, json={"shortcut": "b", "body": "b"})
    assert [r["shortcut"] for r in (await http.get(f"{INBOX}/canned-replies",
                                                   headers=a.auth)).json()["replies"]] == ["hola"]
    sent = await client.post(f"{INBOX}/outreach", headers=headers, json={
        "phone": "+5215500001111", "template": {"name": "seguimiento_cita", "params": ["a", "b"]}})
    assert sent.status_code == 202
    a_all = (await http.get(f"{INBOX}/conversations", headers=a.auth,
                            params={"filter": "all"})).json()["conversations"]
    assert [c["id"] for c in a_all] == [str(a.conversation_id)]


async def test_a_login_into_another_clinic_with_my_password_is_401(http, two_clinics):
    a, b, _ = two_clinics
    answer = await http.post("/api/v1/auth/login", json={
        "tenant": a.tenant.slug, "email": b.agent_email, "password": PASSWORD})
    assert answer.status_code == 401


async def test_another_clinics_stream_gets_none_of_our_events(http, two_clinics):
    a, b, _ = two_clinics
    theirs = await login(http, b)
    try:
        async with theirs.stream("GET", "/api/v1/events/stream") as b_stream, \
                http.stream("GET", "/api/v1/events/stream", headers=a.auth) as a_stream:
            b_lines, a_lines = b_stream.aiter_lines(), a_stream.aiter_lines()
            assert await anext(b_lines) == "retry: 1000" and await anext(a_lines) == "retry: 1000"
            took = await http.post(f"{INBOX}/conversations/{a.conversation_id}/take", headers=a.auth)
            assert took.status_code == 200

            async def event_line(lines) -> str:
                async for line in lines:
                    if line.startswith("event:"):
                        return line
                return ""

            assert await asyncio.wait_for(event_line(a_lines), 5) == "event: conversation.escalated"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(event_line(b_lines), 1.0)
    finally:
        await theirs.aclose()
