"""The AI responder against real RabbitMQ and PostgreSQL, with the sandbox's fake Anthropic
Messages API behind the real `anthropic` SDK."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from tistis_ai_responder.fallback import BOOKING_NOTE
from tistis_ai_responder.main import start
from tistis_common.db import tenant_tx
from tistis_common.events import ReplyRequested
from tistis_common.ids import stable_id
from tistis_common.testing.plugin import eventually, running

ALWAYS_OPEN = {"timezone": "UTC", **{d: [["00:00", "23:59"]] for d in
                                     ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
OPEN_ALL_DAY = {"ai_context": {"business_hours": ALWAYS_OPEN,
                               "escalation_keywords": ["queja", "urgente"]}}


def tool_answer(reply: str, signals=(), actions=()) -> dict:
    """A scripted answer of the assistant's tools: a reply, its signals and its actions
    (`schedule_appointment` -> book_appointment, `escalate` -> hand_over_to_human)."""
    calls: list[dict] = [{"name": "reply_to_patient", "input": {"text": reply}}]
    if signals:
        calls.append({"name": "record_interest", "input": {"signals": list(signals)}})
    for action in actions:
        if action["type"] == "escalate":
            calls.append({"name": "hand_over_to_human", "input": {"reason": action["reason"]}})
        else:
            calls.append({"name": "book_appointment", "input": {
                k: v for k, v in action.items() if k in ("service", "branch", "preferred_dates")}})
    return {"tool_calls": calls}


async def rows(pool, tenant_id, sql: str, *args):
    async with tenant_tx(pool, tenant_id) as conn:
        return await conn.fetch(sql, *args)


async def ai_messages(pool, tenant_id):
    return await rows(pool, tenant_id, """SELECT * FROM messages WHERE direction = 'outbound'
                                          ORDER BY created_at""")


@pytest.fixture
async def responder(settings, ai_settings, sandbox):
    async with running(start, settings, **ai_settings) as runtime:
        yield runtime


class TestFirstMessage:
    async def test_first_message_creates_lead_conversation_and_ai_reply(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", tool_answer(
            "¡Hola María! La limpieza dental cuesta de $600 a $900 MXN. ¿Qué día te acomoda?",
            signals=["interested", "budget_mentioned"],
            actions=[{"type": "schedule_appointment", "service": "limpieza dental",
                      "branch": "Centro", "preferred_dates": ["2026-12-01"]}],
        ))
        inbound = patient_message(tenant, "Hola, quiero una cita para limpieza, ¿cuánto cuesta?")
        await bus.publish(inbound)

        [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text.startswith("¡Hola María!")
        assert (out.channel, out.recipient_id, out.purpose) == (inbound.channel, "5215512345678",
                                                                "reply")
        assert out.correlation_id == inbound.event_id
        [created] = await bus.wait(tenant.id, "lead.created")
        assert created.lead_id == out.lead_id and created.name == "María García"
        [signals] = await bus.wait(tenant.id, "lead.signals")
        assert (signals.signals, signals.source) == (["interested", "budget_mentioned"], "ai")
        [appointment] = await bus.wait(tenant.id, "appointment.requested")
        assert appointment.service_name == "Limpieza dental" and appointment.service_id
        assert appointment.branch_name == "Centro" and appointment.preferred_dates == ["2026-12-01"]

        [reply] = await ai_messages(app_pool, tenant.id)
        assert reply["id"] == out.message_id and reply["conversation_id"] == out.conversation_id
        assert (reply["sender_type"], reply["status"], reply["fallback"]) == ("ai", "pending", False)
        assert reply["model"] and reply["input_tokens"] > 0 and reply["output_tokens"] > 0
        assert reply["latency_ms"] is not None and reply["cache_read_tokens"] == 0
        [lead] = await rows(app_pool, tenant.id, "SELECT name, phone FROM leads")
        assert (lead["name"], lead["phone"]) == ("María García", "+5215512345678")

        [call] = await sandbox.requests("anthropic")
        body = call["json"]
        assert body["tool_choice"] == {"type": "any"}
        assert [t["name"] for t in body["tools"]][:2] == ["reply_to_patient", "show_services_menu"]
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert "Limpieza dental: $600 a $900 MXN" in body["system"][0]["text"]
        assert "Av. Juárez 1" in body["system"][0]["text"]
        assert "¿Cuál es su horario?" in body["system"][0]["text"]
        assert body["messages"][-1] == {"role": "user", "content": inbound.text}
        assert "dentro de su horario" in body["system"][1]["text"]
        today = datetime.now(UTC).date().isoformat()  # the tenant's zone here is UTC
        assert f"fecha local {today}" in body["system"][1]["text"]
        assert "cache_control" not in body["system"][1]

    async def test_second_reply_reads_the_clinic_context_from_the_prompt_cache(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Hola"))
        await bus.wait(tenant.id, "message.outbound")
        await bus.publish(patient_message(tenant, "¿Dónde están?"))
        await bus.wait(tenant.id, "message.outbound", count=2)
        first, second = await ai_messages(app_pool, tenant.id)
        assert first["cache_read_tokens"] == 0 and second["cache_read_tokens"] > 0
        body = (await sandbox.requests("anthropic"))[-1]["json"]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


class TestConversations:
    async def test_conversations_run_in_parallel_and_each_reply_goes_to_its_own_patient(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        patients = {f"52155000000{i:02d}": f"Soy el paciente {i}" for i in range(5)}
        for user, text in patients.items():
            await bus.publish(patient_message(tenant, text, user=user))
        outs = await bus.wait(tenant.id, "message.outbound", count=len(patients))
        # The fake model quotes the last patient text it was given.
        assert {o.recipient_id: patients[o.recipient_id] in o.text for o in outs} == {
            user: True for user in patients}
        assert len({o.conversation_id for o in outs}) == len(patients)

    async def test_a_lead_flagged_as_spam_gets_no_reply(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Hola"))
        await bus.wait(tenant.id, "message.outbound")
        async with tenant_tx(app_pool, tenant.id) as conn:
            await conn.execute("UPDATE leads SET spam = true")
        later = patient_message(tenant, "Gana dinero con bitcoin")
        await bus.publish(later)

        async def stored():
            return await rows(app_pool, tenant.id,
                              "SELECT 1 FROM messages WHERE platform_message_id = $1",
                              later.platform_message_id)

        await eventually(stored)
        await asyncio.sleep(0.6)
        assert len(await bus.events(tenant.id, "message.outbound")) == 1
        assert len(await sandbox.requests("anthropic")) == 1


class TestDuplicatesAndBursts:
    async def test_same_event_twice_gives_one_reply(self, patient_message, responder, bus, sandbox, app_pool,
                                                     make_tenant):
        tenant = await make_tenant(OPEN_ALL_DAY)
        inbound = patient_message(tenant, "Hola, ¿tienen citas mañana?")
        await bus.publish(inbound)
        await bus.publish(inbound)
        # Both deliveries publish, the second re-emitting the very same reply.
        outs = await bus.wait(tenant.id, "message.outbound", count=2)
        assert len({o.event_id for o in outs}) == 1 and len({o.message_id for o in outs}) == 1
        assert len(await sandbox.requests("anthropic")) == 1
        assert len(await ai_messages(app_pool, tenant.id)) == 1
        async with tenant_tx(app_pool, tenant.id) as conn:  # kept in the shared outbox
            kept = await conn.fetch("SELECT event_id FROM event_outbox WHERE consumer = $1",
                                    "ai-responder.replies")
        assert outs[0].event_id in {r["event_id"] for r in kept}

    async def test_three_quick_messages_get_one_reply_answering_all(
        self, patient_message, settings, ai_settings, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        texts = ["Hola", "quiero una limpieza", "¿tienen lugar el sábado?"]
        async with running(start, settings, **{**ai_settings, "ai_debounce_seconds": 0.6}):
            for text in texts:
                await bus.publish(patient_message(tenant, text))
            await bus.wait(tenant.id, "message.outbound")
            stored = await rows(app_pool, tenant.id,
                                "SELECT id FROM messages WHERE direction = 'inbound' ORDER BY created_at")
            assert len(stored) == 3
            await asyncio.sleep(0.8)  # the earlier handlers finish and stay quiet
        assert len(await bus.events(tenant.id, "message.outbound")) == 1
        [call] = await sandbox.requests("anthropic")
        assert call["json"]["messages"] == [{"role": "user", "content": "\n".join(texts)}]
        [reply] = await ai_messages(app_pool, tenant.id)
        assert reply["payload"]["trigger_message_id"] == str(stored[-1]["id"])


    async def test_message_sent_while_the_model_thinks_gets_the_next_reply_in_order(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", {**tool_answer("Primera respuesta"), "delay": 1.0},
                             tool_answer("Segunda respuesta"))
        await bus.publish(patient_message(tenant, "uno"))
        await eventually(lambda: sandbox.requests("anthropic"))  # the model is thinking now
        await bus.publish(patient_message(tenant, "dos"))
        outs = await bus.wait(tenant.id, "message.outbound", count=2)
        assert [o.text for o in outs] == ["Primera respuesta", "Segunda respuesta"]
        second = (await sandbox.requests("anthropic"))[1]["json"]
        assert second["messages"] == [{"role": "user", "content": "uno"},
                                      {"role": "assistant", "content": "Primera respuesta"},
                                      {"role": "user", "content": "dos"}]


class TestEscalation:
    async def test_escalation_keyword_escalates_and_stops_ai_replies(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Quiero poner una QUÉJA por mi última cita"))
        [escalated] = await bus.wait(tenant.id, "conversation.escalated")
        assert (escalated.source, escalated.reason) == ("keyword", "keyword: queja")
        [holding] = await bus.wait(tenant.id, "message.outbound")
        assert holding.purpose == "holding" and holding.text
        [conversation] = await rows(app_pool, tenant.id, "SELECT status FROM conversations")
        assert conversation["status"] == "escalated"

        later = patient_message(tenant, "¿Hola? ¿Alguien?")
        await bus.publish(later)

        async def stored():
            return await rows(app_pool, tenant.id, "SELECT 1 FROM messages WHERE platform_message_id = $1",
                              later.platform_message_id)

        await eventually(stored)
        await asyncio.sleep(0.6)
        assert len(await bus.events(tenant.id, "message.outbound")) == 1
        assert await sandbox.requests("anthropic") == []

    async def test_an_edit_of_the_clinic_context_counts_from_the_next_message(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        """The context is cached per tenant; an edit moves `tenants.context_version`."""
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Tengo dolor de muelas", user="5215500000001"))
        await bus.wait(tenant.id, "message.outbound")
        assert await bus.events(tenant.id, "conversation.escalated") == []
        async with tenant_tx(app_pool, tenant.id) as conn:
            await conn.execute("UPDATE ai_tenant_context SET escalation_keywords = '{dolor}'")
        await bus.publish(patient_message(tenant, "Tengo dolor de muelas", user="5215500000002"))
        [escalated] = await bus.wait(tenant.id, "conversation.escalated")
        assert escalated.reason == "keyword: dolor"

    async def test_too_many_unresolved_messages_escalate(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant({"ai_context": {"business_hours": ALWAYS_OPEN,
                                                   "auto_escalate_after_messages": 1}})
        await bus.publish(patient_message(tenant, "Hola"))
        await bus.wait(tenant.id, "message.outbound")
        await bus.publish(patient_message(tenant, "¿Me ayudas?"))
        [escalated] = await bus.wait(tenant.id, "conversation.escalated")
        assert escalated.source == "auto"
        assert len(await sandbox.requests("anthropic")) == 1

    async def test_staff_reply_from_the_native_app_hands_the_conversation_to_a_human(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Te escribe tu recepcionista", sender_type="agent"))

        async def human():
            found = await rows(app_pool, tenant.id, "SELECT status FROM conversations")
            return found and found[0]["status"] == "human"

        await eventually(human)
        await bus.publish(patient_message(tenant, "Gracias, entonces el lunes"))
        await asyncio.sleep(0.8)
        assert await bus.events(tenant.id, "message.outbound") == []
        assert await sandbox.requests("anthropic") == []

    async def test_staff_can_ask_the_ai_to_answer_an_escalated_conversation(
        self, patient_message, responder, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await bus.publish(patient_message(tenant, "Es urgente"))
        [holding] = await bus.wait(tenant.id, "message.outbound")
        request = ReplyRequested(tenant_id=tenant.id, conversation_id=holding.conversation_id,
                                 requested_by="staff")
        await bus.publish(request)
        outs = await bus.wait(tenant.id, "message.outbound", count=2)
        assert outs[1].purpose == "reply" and outs[1].correlation_id == request.event_id


class TestModelFailures:
    async def test_rate_limit_then_success_replies_once(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", {"status": 429, "headers": {"retry-after": "0"}},
                             tool_answer("¡Con gusto te ayudo!"))
        await bus.publish(patient_message(tenant, "Hola"))
        [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text == "¡Con gusto te ayudo!"
        calls = await sandbox.requests("anthropic")
        assert [c["status"] for c in calls] == [429, 200]

    async def test_server_error_forever_ends_in_the_dead_letter_queue_with_the_error(
        self, patient_message, responder, bus, sandbox, settings, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.fault("anthropic", "error", status=500)
        inbound = patient_message(tenant, "Hola")
        await bus.publish(inbound)
        dead = await _dead_letter(bus, inbound.event_id)
        assert "ModelUnavailable" in dead.headers["x-error"]
        assert "500" in dead.headers["x-error"] or "Internal" in dead.headers["x-error"]
        assert dead.headers["x-attempt"] == len(settings.retry_delays) + 1
        assert await bus.events(tenant.id, "message.outbound") == []
        assert await ai_messages(app_pool, tenant.id) == []

    async def test_rejected_request_goes_to_the_dead_letter_queue_at_once(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", {"status": 400, "message": "messages: bad"})
        inbound = patient_message(tenant, "Hola")
        await bus.publish(inbound)
        dead = await _dead_letter(bus, inbound.event_id)
        assert "400" in dead.headers["x-error"] and dead.headers["x-attempt"] == 1
        assert len(await sandbox.requests("anthropic")) == 1


    async def test_slow_answer_times_out_and_the_retry_replies(
        self, patient_message, settings, ai_settings, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", {"delay": 2.0}, tool_answer("¡Aquí estoy!"))
        overrides = {**ai_settings, "ai_timeout_seconds": 0.5, "ai_sdk_max_retries": 0}
        async with running(start, settings, **overrides):
            await bus.publish(patient_message(tenant, "Hola"))
            [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text == "¡Aquí estoy!"

    async def test_model_that_refuses_temperature_is_asked_without_it(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic",
                             {"status": 400, "message": "`temperature` is deprecated for this model."},
                             tool_answer("¡Hola!"))
        await bus.publish(patient_message(tenant, "Hola"))
        [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text == "¡Hola!"
        first, second = await sandbox.requests("anthropic")
        assert first["json"]["temperature"] == 0.7 and "temperature" not in second["json"]


async def _dead_letter(bus, inbound_event_id: uuid.UUID, timeout: float = 20):
    """The dead letter of the reply to a patient message: its `ReplyDue`, in the replies' DLQ."""
    event_id = stable_id("reply-due", inbound_event_id)
    channel = bus.queue.channel
    dlq = await channel.get_queue("ai-responder.replies.dlq")
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await dlq.get(fail=False)
        if message is not None:
            await message.ack()
            if message.message_id == str(event_id):
                return message
            continue
        await asyncio.sleep(0.1)
    raise AssertionError("nothing dead-lettered")


class TestFallback:
    async def test_without_a_key_the_fallback_answers_from_the_faq_marked_as_such(
        self, patient_message, settings, ai_settings, bus, sandbox, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        before = REGISTRY.get_sample_value("tistis_ai_replies_total",
                                           {"tenant": tenant.slug, "outcome": "fallback"}) or 0
        async with running(start, settings, **{**ai_settings, "anthropic_api_key": None}):
            await bus.publish(patient_message(tenant, "Hola, me interesa. ¿Qué HORARIO tienen?"))
            [out] = await bus.wait(tenant.id, "message.outbound")
            [signals] = await bus.wait(tenant.id, "lead.signals")
        assert out.text == "Lunes a viernes de 9:00 a 18:00." and out.purpose == "reply"
        assert (signals.source, signals.signals) == ("rules", ["interested"])
        [reply] = await ai_messages(app_pool, tenant.id)
        assert reply["fallback"] is True and reply["model"] is None
        assert await bus.events(tenant.id, "conversation.escalated") == []
        assert await sandbox.requests("anthropic") == []
        after = REGISTRY.get_sample_value("tistis_ai_replies_total",
                                          {"tenant": tenant.slug, "outcome": "fallback"})
        assert after == before + 1

    async def test_fallback_answers_and_hands_a_booking_to_a_human(
        self, patient_message, settings, ai_settings, bus, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        async with running(start, settings, **{**ai_settings, "anthropic_api_key": None}):
            await bus.publish(patient_message(tenant, "Quiero una cita para limpieza"))
            [out] = await bus.wait(tenant.id, "message.outbound")
            [escalated] = await bus.wait(tenant.id, "conversation.escalated")
        assert out.text == "Limpieza dental: $600 a $900 MXN. " + BOOKING_NOTE
        assert out.purpose == "reply" and "appointment" in escalated.reason

    async def test_fallback_that_cannot_help_holds_and_escalates(
        self, patient_message, settings, ai_settings, bus, app_pool, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        async with running(start, settings, **{**ai_settings, "anthropic_api_key": None}):
            await bus.publish(patient_message(tenant, "¿Aceptan mi seguro de gastos médicos?"))
            [out] = await bus.wait(tenant.id, "message.outbound")
            [escalated] = await bus.wait(tenant.id, "conversation.escalated")
        assert out.purpose == "holding" and "equipo" in out.text
        assert escalated.source == "ai"
        [reply] = await ai_messages(app_pool, tenant.id)
        assert reply["fallback"] is True

    async def test_open_circuit_uses_the_fallback(self, patient_message, settings, ai_settings, bus, sandbox,
                                                  make_tenant):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.fault("anthropic", "error", status=500)
        overrides = {**ai_settings, "ai_circuit_failures": 1, "ai_sdk_max_retries": 0}
        async with running(start, settings, **overrides):
            await bus.publish(patient_message(tenant, "¿Cuál es su horario?"))
            # First attempt fails and opens the circuit; the retry answers from the FAQ.
            [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text == "Lunes a viernes de 9:00 a 18:00."
        assert len(await sandbox.requests("anthropic")) == 1


    async def test_a_refused_key_opens_the_circuit_and_the_fallback_answers(
        self, patient_message, responder, bus, sandbox, make_tenant
    ):
        tenant = await make_tenant(OPEN_ALL_DAY)
        await sandbox.script("anthropic", {"status": 401, "message": "invalid x-api-key"})
        await bus.publish(patient_message(tenant, "¿Cuál es su horario?"))
        [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text == "Lunes a viernes de 9:00 a 18:00."
        assert REGISTRY.get_sample_value("tistis_ai_circuit_open") == 1
        assert len(await sandbox.requests("anthropic")) == 1


class TestBusinessHours:
    async def test_outside_business_hours_the_reply_says_when_the_clinic_answers(
        self, patient_message, settings, ai_settings, bus, make_tenant
    ):
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%a").lower()
        hours = {"timezone": "UTC", tomorrow: [["09:00", "10:00"]]}
        tenant = await make_tenant({"ai_context": {"business_hours": hours}})
        async with running(start, settings, **{**ai_settings, "anthropic_api_key": None}):
            await bus.publish(patient_message(tenant, "¿Cuál es su horario?"))
            [out] = await bus.wait(tenant.id, "message.outbound")
        assert out.text.startswith("Lunes a viernes de 9:00 a 18:00.")
        assert "mañana a las 09:00" in out.text
