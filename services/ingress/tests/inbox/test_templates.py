"""WhatsApp templates and their approval status: synced from the (fake) WhatsApp Business
Management API. (The `message_template_status_update` webhook is not wired into the ingress's
reworked pipeline yet; the periodic sync picks status changes up.)

Shapes: Meta, "Template management" (GET /{waba-id}/message_templates),
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-management/
and the message_template_status_update webhook reference (Meta's text, as copied in
LimaLb01/endpoint-flow docs_whatsappflow/docs_apiwhatsapp/message_template_status_update.md):
entry[].id is the WABA id, changes[].field "message_template_status_update", value
{event, message_template_id (integer), message_template_name, message_template_language, reason}.
"""

from __future__ import annotations

import httpx
import pytest
from tistis_common.db import connect
from tistis_common.testing.plugin import running
from tistis_ingress.api.templates import fetch, parse
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import running_sandbox
from tistis_sandbox.templates import CATALOG

from .conftest import SHARED_ADDRESS


@pytest.fixture(scope="module")
def sandbox_url():
    with running_sandbox() as url:
        yield url


async def with_waba(settings, tenant_id, waba_id: str) -> None:
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
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
