"""The web inbox in a real headless browser (Debian's chromium driven by Playwright by
executable_path; scripts/install-browser.sh installs it, nothing is downloaded): a receptionist
logs in, sees an escalated conversation appear live, takes it, answers, sends a template once
the 24 h window has closed, and hands it back to the AI; the patient's side is the sandbox's
fake WhatsApp Cloud API. Screenshots go to test-artifacts/inbox/ (git-ignored).

Services: the real ingress, AI responder (no model key: its rules fallback, which escalates on
the tenant's keywords) and dispatcher, on RabbitMQ and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect
from tistis_ai_responder.main import start as start_ai_responder
from tistis_common.admin import issue_api_key
from tistis_common.db import connect, scope
from tistis_common.staff import create_user
from tistis_common.testing.plugin import eventually, own_vhost, running
from tistis_dispatcher.main import start as start_dispatcher
from tistis_ingress.main import start as start_ingress
from tistis_sandbox import AsyncSandboxClient, running_sandbox
from tistis_sandbox import webhooks as wh

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "inbox"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "recepcion-segura-2026"
WABA = "200000000000001"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="make test installs chromium (scripts/install-browser.sh)")


async def staff_clinic(settings, tenant) -> tuple[str, str]:
    """A receptionist and an admin key; the WhatsApp connection names its WABA."""
    email = f"laura-{uuid.uuid4().hex[:6]}@clinic.mx"
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await scope(conn, tenant.id)
            await create_user(conn, tenant.id, email, "Laura", "agent", PASSWORD)
            _, admin_key = await issue_api_key(conn, tenant.id, "ops")
            await conn.execute(
                """UPDATE channel_connections SET settings = settings || jsonb_build_object(
                     'business_account_id', $1::text) WHERE channel = 'whatsapp'""", WABA)
    finally:
        await conn.close()
    return email, admin_key


async def age_the_window(settings, tenant, hours: float) -> None:
    """As if the patient's last message were `hours` old (the 24 h window closes)."""
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await scope(conn, tenant.id)
            for table in ("conversations", "leads"):
                await conn.execute(
                    f"UPDATE {table} SET last_inbound_at = now() - make_interval(hours => $1)",
                    hours)
    finally:
        await conn.close()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_a_receptionist_takes_answers_templates_and_hands_back(
        settings, make_tenant, tmp_path):
    tenant = await make_tenant()
    email, admin_key = await staff_clinic(settings, tenant)
    patient = f"521{uuid.uuid4().int % 10**10:010d}"
    with running_sandbox() as sandbox_url:
        async with own_vhost(settings) as s, AsyncSandboxClient(sandbox_url) as sandbox:
            s = s.model_copy(update={
                "graph_api_base_url": sandbox_url, "tiktok_api_base_url": sandbox_url,
                "anthropic_api_key": None, "ai_debounce_seconds": 0.2,
                "inbox_template_sync_seconds": 0, "realtime_recheck_seconds": 1.0,
                # the whole session logs in from 127.0.0.1 (see tests/inbox/conftest.py)
                "inbox_login_attempts_per_address_15_minutes": 1_000_000,
            })
            async with running(start_ingress, s) as ingress, running(start_ai_responder, s), \
                    running(start_dispatcher, s), async_playwright() as pw:
                base = f"http://127.0.0.1:{ingress.http_port}"
                async with httpx.AsyncClient(base_url=base) as http:
                    synced = await http.post("/api/v1/inbox/templates/sync",
                                             headers={"Authorization": f"Bearer {admin_key}"})
                    assert synced.status_code == 200
                    browser = await pw.chromium.launch_persistent_context(
                        str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM),
                        headless=True, args=FLAGS, viewport={"width": 1280, "height": 860},
                        locale="es-MX")
                    try:
                        page = browser.pages[0] if browser.pages else await browser.new_page()
                        errors: list[str] = []
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        await run_the_day(page, base, http, sandbox, tenant, email, patient, s)
                        await the_clinic_views(page, settings, tenant)
                        assert errors == []
                    finally:
                        await browser.close()


async def run_the_day(page: Page, base: str, http: httpx.AsyncClient, sandbox, tenant,
                      email: str, patient: str, settings) -> None:
    # Log in with the keyboard alone.
    await page.goto(f"{base}/inbox")
    await page.fill("#tenant", tenant.slug)
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await shot(page, "01-login")
    await page.press("#password", "Enter")
    await expect(page.locator("#me")).to_have_text("Laura")
    await expect(page.locator("#live")).to_have_text("En vivo", timeout=10_000)
    await page.click("#tab-needs_human")
    await expect(page.locator("#conversations")).to_contain_text("No hay conversaciones")

    # The patient writes an urgent message: the AI responder escalates it, the list shows it live.
    payload = wh.whatsapp_payload(
        [wh.wa_text(patient, "Es urgent, me duele mucho una muela")], name="Rosa Pérez",
        phone_number_id=tenant.whatsapp_phone_number_id)
    body, headers = wh.sign_meta(payload, settings.meta_app_secret)
    answer = await http.post(f"/api/webhook/whatsapp/{tenant.slug}", content=body, headers=headers)
    assert answer.status_code == 200
    row = page.locator("#conversations .conv", has_text="Rosa Pérez")
    await expect(row).to_be_visible(timeout=15_000)
    await expect(row).to_contain_text("Espera a un humano")
    await shot(page, "02-escalated-live")

    # Open it from the keyboard, take it and answer.
    await row.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#conv-title")).to_contain_text("Rosa Pérez")
    await page.click("#take")
    await expect(page.locator("#conv-assignee")).to_contain_text("Laura")
    await page.fill("#reply-text", "Hola Rosa, soy Laura. Te esperamos hoy a las 16:00.")
    await page.click("#send")
    sent = await sandbox.wait_for("whatsapp", recipient=patient, count=2, within=15)
    texts = [(r["json"].get("text") or {}).get("body") for r in sent]
    assert "Hola Rosa, soy Laura. Te esperamos hoy a las 16:00." in texts
    await expect(page.locator("#messages")).to_contain_text("Te esperamos hoy", timeout=10_000)
    await shot(page, "03-answered")

    # A day later the window has closed: only an approved template may go.
    await age_the_window(settings, tenant, 30)
    await page.reload()
    await page.click("#tab-mine")
    await page.locator("#conversations .conv", has_text="Rosa Pérez").click()
    await expect(page.locator("#template-form")).to_be_visible()
    await expect(page.locator("#reply-form")).to_be_hidden()
    await page.select_option("#template-name", "retomar_conversacion|es_MX")
    await page.fill("#template-param-1", "Rosa")
    await page.fill("#template-param-2", "¿cómo sigue tu muela?")
    await expect(page.locator("#template-preview")).to_have_text(
        "Hola Rosa, te escribimos de la clínica para dar seguimiento a tu mensaje: "
        "¿cómo sigue tu muela?")
    await shot(page, "04-template")
    await page.click("#send-template")

    async def template_sent():
        return [r for r in await sandbox.requests("whatsapp", patient)
                if (r["json"] or {}).get("type") == "template"]

    [template] = await eventually(template_sent, timeout=15)
    assert template["json"]["template"]["name"] == "retomar_conversacion"
    params = template["json"]["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["Rosa", "¿cómo sigue tu muela?"]

    # Hand it back to the AI in one action.
    await page.click("#handback")
    await expect(page.locator("#conv-status")).to_have_text("IA atendiendo", timeout=10_000)
    await expect(page.locator("#conv-assignee")).to_contain_text(re.compile("nadie"))
    await shot(page, "05-handed-back")

    # The same page on a phone: the list, then the conversation with a way back.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.click("#back")
    await page.click("#tab-ai")
    await expect(page.locator("#conversations .conv", has_text="Rosa Pérez")).to_be_visible()
    await shot(page, "06-phone-list")


async def the_clinic_views(page: Page, settings, tenant) -> None:
    """The day's appointments of the branch, the reports, and the page in English."""
    conn = await connect(settings.migration_database_url)
    try:
        async with conn.transaction():
            await scope(conn, tenant.id)
            await conn.execute(
                """INSERT INTO appointments (tenant_id, lead_id, branch_id, scheduled_at, ends_at)
                   SELECT $1, l.id, b.id, date_trunc('day', now() AT TIME ZONE b.timezone)
                            AT TIME ZONE b.timezone + interval '17 hours',
                          date_trunc('day', now() AT TIME ZONE b.timezone)
                            AT TIME ZONE b.timezone + interval '17 hours 45 minutes'
                   FROM leads l, branches b LIMIT 1""", tenant.id)
    finally:
        await conn.close()
    await page.set_viewport_size({"width": 1280, "height": 860})
    await page.click("#nav-appointments")
    await expect(page.locator("#appointments li", has_text="Rosa Pérez")).to_be_visible()
    await expect(page.locator("#appointments li", has_text="Rosa Pérez")).to_contain_text("Agendada")
    await shot(page, "07-appointments")
    await page.click("#nav-reports")
    await expect(page.locator("#report tbody tr", has_text="whatsapp")).to_be_visible()
    await shot(page, "08-reports")
    await page.goto(page.url.split("?")[0].split("#")[0] + "?lang=en")
    await expect(page.locator("#tab-needs_human")).to_contain_text("Needs a human")
    await shot(page, "09-english")
