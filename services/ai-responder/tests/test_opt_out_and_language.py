"""Opt-out and opt-in words take effect at once, without the model; the fallback answers in the
patient's language."""

from __future__ import annotations

import asyncio

import pytest
from tistis_ai_responder.main import start
from tistis_common.testing.plugin import running

from .test_responder import OPEN_ALL_DAY, rows


@pytest.fixture
async def responder(settings, ai_settings, sandbox):
    async with running(start, settings, **ai_settings) as runtime:
        yield runtime


async def lead_opt_out(app_pool, tenant_id):
    [lead] = await rows(app_pool, tenant_id, "SELECT opted_out_at FROM leads")
    return lead["opted_out_at"]


class TestOptOutWords:
    async def test_a_stop_word_opts_out_at_once_with_one_confirmation_and_alta_undoes_it(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "  Bája. "))  # any case, accent, punctuation
        [out] = await bus.wait(tenant.id, "message.outbound")
        assert "ya no te enviaremos" in out.text and "ALTA" in out.text  # how to come back
        assert await lead_opt_out(app_pool, tenant.id) is not None
        await bus.publish(patient_message(tenant, "BAJA"))
        await asyncio.sleep(0.6)
        assert len(await bus.events(tenant.id, "message.outbound")) == 1  # one confirmation
        await bus.publish(patient_message(tenant, "alta"))
        outs = await bus.wait(tenant.id, "message.outbound", count=2)
        assert "Bienvenido de nuevo" in outs[1].text
        assert await lead_opt_out(app_pool, tenant.id) is None
        assert await sandbox.requests("anthropic") == []  # never a question for the model

    async def test_a_sentence_using_the_word_is_an_ordinary_message(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "¿cómo me doy de baja del tratamiento?"))
        await bus.wait(tenant.id, "message.outbound")
        assert await lead_opt_out(app_pool, tenant.id) is None
        assert len(await sandbox.requests("anthropic")) == 1

    async def test_the_tenant_configures_its_own_words(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant({"ai_context": {**OPEN_ALL_DAY["ai_context"],
                                                   "opt_out_words": ["NO MAS"],
                                                   "opt_in_words": ["VOLVER"]}})
        await bus.publish(patient_message(tenant, "no más"))
        [out] = await bus.wait(tenant.id, "message.outbound")
        assert "VOLVER" in out.text
        assert await lead_opt_out(app_pool, tenant.id) is not None


class TestFallbackLanguage:
    async def test_without_a_key_an_english_message_gets_an_english_answer(
        self, patient_message, settings, ai_settings, bus, make_tenant
    ):
        tenant = await make_tenant({**OPEN_ALL_DAY, "services": [
            {"name": "Limpieza dental", "price_min": 600, "price_max": 900,
             "duration_minutes": 45, "keywords": ["limpieza", "cleaning"]}]})
        async with running(start, settings, **{**ai_settings, "anthropic_api_key": None}):
            await bus.publish(patient_message(tenant, "Hi, how much does a cleaning cost?"))
            [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text == "Limpieza dental: $600 to $900 MXN."

    async def test_without_a_key_an_english_message_nobody_can_answer_is_held_in_english(
        self, patient_message, settings, ai_settings, bus, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        async with running(start, settings, **{**ai_settings, "anthropic_api_key": None}):
            await bus.publish(patient_message(tenant, "Do you work with my insurance company?"))
            [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text.startswith("Thank you for writing to us!")
