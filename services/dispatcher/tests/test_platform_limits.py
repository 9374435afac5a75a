"""What the platforms accept, as their fakes enforce it: Instagram's 1,000 UTF-8 bytes and its
window answer (code 10 / subcode 2534022), WhatsApp's template parameter rule and the
`recipient` field for business-scoped user ids.

Sources: Instagram messaging API reference ("text ... must be UTF-8 and less than 1000
bytes", developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/
messaging-api); Instagram error 2534022 "This message is sent outside of allowed window"
(developers.facebook.com/docs/messenger-platform/error-codes); the template parameter refusal
"Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
(github.com/netflie/whatsapp-cloud-api/issues/201); `recipient` for BSUIDs
(docs.kapso.ai/docs/whatsapp/business-scoped-user-ids.md).
"""

from __future__ import annotations

import uuid

from tistis_common.db import tenant_tx
from tistis_common.events import TemplateRef


class TestInstagram:
    async def test_text_is_split_within_1000_utf8_bytes(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "instagram")
        # Under 1,000 characters but over 2,000 bytes: one message by characters, at least
        # three by Instagram's count.
        text = " ".join(["Cita lista " + "😀" * 20 + "."] * 25)
        assert len(text) < 1000 and len(text.encode()) > 2000
        event = clinic.outbound(conv, text=text)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        sent = await sandbox.requests("graph", conv.recipient)
        assert len(sent) >= 3
        parts = [r["json"]["message"]["text"] for r in sent]
        assert all(len(p.encode()) <= 1000 for p in parts)
        assert " ".join(parts) == text

    async def test_outside_the_window_is_blocked_window(self, clinic, sandbox, make_tenant):
        tenant = await make_tenant()
        conv = await clinic.conversation(tenant, "instagram")
        await sandbox.close_window(tenant.instagram_account_id, conv.recipient)
        event = clinic.outbound(conv, text="¿Sigue interesada?")
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "blocked_window", "failed")
        assert (row["status"], row["error_code"]) == ("blocked_window", 10)


class TestWhatsApp:
    async def test_template_parameters_are_one_line_as_meta_requires(
        self, clinic, sandbox, make_tenant
    ):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        event = clinic.outbound(conv, kind="template", text=None, template=TemplateRef(
            name="recordatorio_cita", body_params=["Ana", "Av. Juárez 1\nCentro,\tCDMX",
                                                   "10:00      hrs"]))
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [sent] = await sandbox.wait_for("whatsapp", recipient=conv.recipient)
        params = [p["text"] for p in sent["json"]["template"]["components"][0]["parameters"]]
        assert params == ["Ana", "Av. Juárez 1, Centro, CDMX", "10:00 hrs"]

    async def test_a_username_user_is_addressed_in_recipient(self, clinic, sandbox, make_tenant):
        conv = await clinic.conversation(await make_tenant(), "whatsapp")
        bsuid = f"MX.{uuid.uuid4().int % 10**18}"
        async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
            await conn.execute("UPDATE leads SET platform_user_id = $1 WHERE id = $2", bsuid,
                               conv.lead_id)
        event = clinic.outbound(conv, text="Hola", recipient_id=bsuid)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [sent] = await sandbox.wait_for("whatsapp", recipient=bsuid)
        assert sent["json"]["recipient"] == bsuid and "to" not in sent["json"]
