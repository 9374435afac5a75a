"""WhatsApp templates and their approval status: synced from the (fake) WhatsApp Business
Management API, and moved between syncs by the `message_template_status_update` webhook through
the real ingress's webhook pipeline (signed; routed by the WABA in entry.id to the tenant whose
WhatsApp connection names it; an unknown WABA acknowledged and counted).

Shapes: Meta, "Template management" (GET /{waba-id}/message_templates),
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-management/
and the message_template_status_update webhook reference (Meta's text, as copied in
LimaLb01/endpoint-flow docs_whatsappflow/docs_apiwhatsapp/message_template_status_update.md):
entry[].id is the WABA id, changes[].field "message_template_status_update", value
{event, message_template_id (integer), message_template_name, message_template_language, reason}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from tistis_common.db import connect, scope
from tistis_common.testing.plugin import eventually, running
from tistis_ingress.api.templates import fetch, parse
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import running_sandbox
from tistis_sandbox.templates import CATALOG

from .conftest import SHARED_ADDRESS
from .test_clinic import owner_sql


@pytest.fixture(scope="module")
def sandbox_url():
    with running_sandbox() as url:
        yield url


async def with_waba(settings, tenant_id, waba_id: str) -> None:
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await scope(conn, tenant_id)
            await conn.execute(
                """UPDATE channel_connections SET settings = settings || jsonb_build_object(
                     'business_account_id', $1::text) WHERE channel = 'whatsapp'""", waba_id)
    finally:
        await conn.close()


class TestParse:
    def test_positional_placeholders_count_as_parameters(self):
        row = parse({"id": "1", "name": "x", "language": "es_MX", "status": "approved",
                     "components": [{"type": "HEADER", "text": "{{1}}"},
                                    {"type": "BODY", "text": "Hola {{1}}, el {{2}}"}]})
        assert row is not None
        assert (row["params"], row["status"], row["body"]) == (2, "APPROVED", "Hola {{1}}, el {{2}}")

    def test_an_item_without_id_is_skipped(self):
        assert parse({"name": "x"}) is None


class TestSync:
    async def test_every_page_of_the_catalog_is_read(self, sandbox_url, settings):
        s = settings.model_copy(update={"graph_api_base_url": sandbox_url})
        async with httpx.AsyncClient() as http:
            # a page size of 100 is what we ask; the fake's `next` is followed all the same
            rows = await fetch(http, s, "200000000000001", "token")
        assert [r["name"] for r in rows] == [t["name"] for t in CATALOG]

    async def test_an_admin_syncs_the_templates_of_the_clinic_only(
            self, sandbox_url, settings, clinic):
        c = await clinic()
        await with_waba(settings, c.tenant.id, "200000000000001")
        admin = {"Authorization": f"Bearer {c.tenant_key}"}
        async with running(start_ingress, settings, graph_api_base_url=sandbox_url,
                           inbox_template_sync_seconds=0, **SHARED_ADDRESS) as ingress, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}") as http:
            assert (await http.post("/api/v1/inbox/templates/sync", headers=c.auth)).status_code == 403
            synced = await http.post("/api/v1/inbox/templates/sync", headers=admin)
            assert synced.status_code == 200
            by_name = {t["name"]: t for t in synced.json()["templates"]}
            assert by_name["promo_blanqueamiento"]["status"] == "PENDING"
            assert by_name["cita_confirmada"]["params"] == 4
            # Another clinic's templates did not move, and it sees none of these.
            other = await clinic()
            theirs = (await http.get("/api/v1/inbox/templates", headers=other.auth)).json()
            assert {t["template_id"] for t in theirs["templates"]}.isdisjoint(
                {t["id"] for t in CATALOG})


def template_update(waba_id: str, template_id: str, event: str, reason: str = "NONE") -> bytes:
    """Meta's documented shape (see the module docstring); the template id is an integer."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": waba_id, "time": int(time.time()),
        "changes": [{"field": "message_template_status_update", "value": {
            "event": event, "message_template_id": int(template_id),
            "message_template_name": "promo_blanqueamiento",
            "message_template_language": "es_MX", "reason": reason}}]}]}).encode()


def signed(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


class TestStatusWebhook:
    async def statuses(self, settings, c) -> dict[str, str]:
        [rows] = await owner_sql(settings, c.tenant.id, (
            "SELECT jsonb_object_agg(template_id, status) FROM whatsapp_templates",))
        return json.loads(rows) if isinstance(rows, str) else rows

    async def two_clinics_one_template_id(self, settings, clinic):
        """Two clinics whose connections name their own WABA, each holding a PENDING template
        under the same id: only routing by the WABA tells them apart."""
        a, b = await clinic(), await clinic()
        template_id = str(uuid.uuid4().int % 10**15)
        wabas = []
        for c in (a, b):
            waba = str(uuid.uuid4().int % 10**15)
            await with_waba(settings, c.tenant.id, waba)
            await owner_sql(settings, c.tenant.id, (
                """UPDATE whatsapp_templates SET template_id = $1
                   WHERE name = 'promo_blanqueamiento' RETURNING 1""", template_id))
            wabas.append(waba)
        return a, b, wabas, template_id

    async def test_a_signed_update_moves_only_the_account_owners_template(
            self, http, settings, clinic):
        a, b, (waba_a, _), template_id = await self.two_clinics_one_template_id(settings, clinic)
        body = template_update(waba_a, template_id, "APPROVED")
        answer = await http.post("/api/webhook/whatsapp", content=body,
                                 headers=signed(body, settings.meta_app_secret))
        assert (answer.status_code, answer.json()) == (
            200, {"status": "accepted", "events": 1, "detail": None})

        async def approved():
            return (await self.statuses(settings, a))[template_id] == "APPROVED"

        await eventually(approved, timeout=10)
        assert (await self.statuses(settings, b))[template_id] == "PENDING"
        # the per-clinic URL reads the same pipeline: a rejection moves it again
        body = template_update(waba_a, template_id, "REJECTED", "INVALID_FORMAT")
        answer = await http.post(f"/api/webhook/whatsapp/{a.tenant.slug}", content=body,
                                 headers=signed(body, settings.meta_app_secret))
        assert answer.status_code == 200

        async def rejected():
            return (await self.statuses(settings, a))[template_id] == "REJECTED"

        await eventually(rejected, timeout=10)
        assert (await self.statuses(settings, b))[template_id] == "PENDING"

    async def test_unsigned_and_unknown_accounts_move_nothing(self, http, settings, clinic):
        a, b, (waba_a, _), template_id = await self.two_clinics_one_template_id(settings, clinic)
        body = template_update(waba_a, template_id, "APPROVED")
        forged = await http.post("/api/webhook/whatsapp", content=body,
                                 headers=signed(body, "not-the-app-secret"))
        assert (forged.status_code, forged.json()["status"]) == (401, "bad_signature")
        nobody = template_update("999999999999999", template_id, "APPROVED")
        unknown = await http.post("/api/webhook/whatsapp", content=nobody,
                                  headers=signed(nobody, settings.meta_app_secret))
        assert (unknown.status_code, unknown.json()["status"]) == (200, "unknown_account")
        metrics = (await http.get("/metrics")).text
        assert 'tistis_webhook_events_total{channel="whatsapp",kind="unknown_account"}' in metrics
        # what a signed update does takes well under this; nothing is on its way here
        import asyncio
        await asyncio.sleep(0.5)
        for c in (a, b):
            assert (await self.statuses(settings, c))[template_id] == "PENDING"
