"""The responder's pure decisions: keywords, business hours, fallback answers, prompt turns,
the circuit breaker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from tistis_ai_responder.context import Faq, Service, TenantContext, conversation_messages
from tistis_ai_responder.fallback import answer_from_catalog
from tistis_ai_responder.model import CircuitBreaker
from tistis_ai_responder.policy import describe_opening, matching_keyword, next_opening
from tistis_ai_responder.signals import detect_signals

WEEKDAYS_9_TO_6 = {"timezone": "America/Mexico_City",
                   **{d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}


def context(**overrides) -> TenantContext:
    base = dict(
        tenant_id=uuid.uuid4(), name="Clínica", timezone="America/Mexico_City",
        system_prompt="Eres amable.", temperature=0.7, max_tokens=500,
        response_style="professional", business_hours=WEEKDAYS_9_TO_6,
        escalation_keywords=("urgent", "complaint"), auto_escalate_after=5, provider="claude",
        model="m", language="es",
        services=(Service(uuid.uuid4(), "Blanqueamiento", None, Decimal(3000), Decimal(3000),
                          "MXN", 60, ("blanqueamiento", "blanquear")),),
        faqs=(Faq("¿Dónde están?", "Av. Juárez 1, Centro.", ("ubicacion", "direccion")),),
    )
    return TenantContext(**{**base, **overrides})


class TestEscalationKeywords:
    def test_keywords_match_without_case_or_accents(self):
        assert matching_keyword(["Tengo una QUEJA"], ["quéja"]) == "quéja"
        assert matching_keyword(["es urgénte!"], ["URGENTE"]) == "URGENTE"

    def test_keywords_match_whole_words_only(self):
        assert matching_keyword(["no es urgentemente"], ["urgente"]) is None


class TestBusinessHours:
    def test_open_during_hours(self):
        thursday_noon = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)  # 12:00 in Mexico City
        assert next_opening(WEEKDAYS_9_TO_6, "America/Mexico_City", thursday_noon) is None

    def test_friday_night_opens_on_monday(self):
        friday_night = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # Fri 21:00 in Mexico City
        opening = next_opening(WEEKDAYS_9_TO_6, "America/Mexico_City", friday_night)
        assert opening is not None and opening.strftime("%a %H:%M") == "Mon 09:00"
        assert describe_opening(opening, friday_night) == "el lunes a las 09:00"

    def test_early_morning_opens_today(self):
        early = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # Thu 06:00 in Mexico City
        opening = next_opening(WEEKDAYS_9_TO_6, "America/Mexico_City", early)
        assert describe_opening(opening, early) == "hoy a las 09:00"


class TestFallbackAnswers:
    def test_faq_found_by_keyword_without_accents(self):
        found = answer_from_catalog(context(), ["¿Cuál es la UBICACIÓN?"])
        assert found.answered and found.text == "Av. Juárez 1, Centro."

    def test_service_price_is_answered(self):
        found = answer_from_catalog(context(), ["quiero blanquear mis dientes"])
        assert found.text == "Blanqueamiento: $3,000 MXN."

    def test_a_greeting_is_answered_without_a_human(self):
        found = answer_from_catalog(context(), ["¡Hola, buenos días!"])
        assert found.answered and found.text.startswith("¡Hola!")

    def test_nothing_known_gives_a_holding_message(self):
        found = answer_from_catalog(context(), ["¿trabajan con seguros?"])
        assert not found.answered and found.text


class TestRulesSignals:
    def test_signals_from_words(self):
        assert detect_signals("Quiero una cita urgente, ¿cuánto cuesta?") == [
            "interested", "urgent", "budget_mentioned"]
        assert detect_signals("No me interesa, gracias") == ["not_interested"]
        assert detect_signals("") == []


class TestPromptTurns:
    def test_bursts_are_one_turn_and_history_starts_with_the_patient(self):
        rows = [
            {"direction": "outbound", "sender_type": "ai", "kind": "text", "content": "Hola"},
            {"direction": "inbound", "sender_type": "lead", "kind": "text", "content": "a"},
            {"direction": "inbound", "sender_type": "lead", "kind": "image", "content": None},
            {"direction": "outbound", "sender_type": "ai", "kind": "text", "content": "b"},
        ]
        assert conversation_messages(rows, "¿y?") == [
            {"role": "user", "content": "a\n[imagen]"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "¿y?"},
        ]


class TestCircuitBreaker:
    def test_opens_after_consecutive_failures_and_half_opens_later(self):
        now = [0.0]
        breaker = CircuitBreaker(threshold=2, reset_s=10, _clock=lambda: now[0])
        breaker.failure()
        assert not breaker.is_open
        breaker.failure()
        assert breaker.is_open
        now[0] = 10.0
        assert breaker.allow()  # one trial call
        breaker.success()
        assert not breaker.is_open and breaker.failures == 0

    def test_half_open_lets_exactly_one_trial_through(self):
        now = [0.0]
        breaker = CircuitBreaker(threshold=1, reset_s=10, _clock=lambda: now[0])
        breaker.failure()
        assert not breaker.allow()
        now[0] = 10.0
        assert [breaker.allow() for _ in range(5)] == [True, False, False, False, False]
        breaker.failure()  # the trial failed: open for another reset period
        now[0] = 15.0
        assert not breaker.allow()
        now[0] = 20.0
        assert breaker.allow() and not breaker.allow()
        breaker.settle()  # the trial ended without a verdict (a refused request): next may try
        assert breaker.allow()
        breaker.success()
        assert all(breaker.allow() for _ in range(3))
