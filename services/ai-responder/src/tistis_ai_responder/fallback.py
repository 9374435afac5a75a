"""The deterministic answer when no model may be called (no key, provider off, circuit open).

It answers only what the clinic wrote down: an FAQ whose keywords appear in the patient's
messages, or a service's price. Anything else gets a holding message and goes to a human.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tistis_common.rules import normalize

from .context import TenantContext
from .policy import contains_phrase

HOLDING = ("¡Gracias por escribirnos! En este momento no puedo darte una respuesta completa; "
           "una persona de nuestro equipo te contestará en breve.")
GREETING = ("¡Hola! Gracias por escribirnos. Con gusto te doy información de nuestros servicios, "
            "precios, sucursales y horarios. ¿En qué te puedo ayudar?")
GREETING_WORDS = frozenset({"hola", "buenas", "buenos", "dias", "tardes", "noches", "buen", "dia",
                            "hello", "hi", "que", "tal", "saludos"})
BOOKING_NOTE = "Para agendar tu cita, una persona de nuestro equipo te escribirá en breve."
BOOKING_WORDS = ("cita", "agendar", "agenda", "reservar", "appointment", "book")
ESCALATION_HOLDING = ("Gracias por tu mensaje. Una persona de nuestro equipo te atenderá "
                      "en breve.")


@dataclass(frozen=True)
class FallbackAnswer:
    text: str
    answered: bool  # False: only a holding message, a human must take over
    wants_booking: bool = False  # the fallback cannot book: a human must follow up


def _hits(texts: Sequence[str], keywords: Sequence[str]) -> int:
    return sum(1 for k in keywords if any(contains_phrase(t, k) for t in texts))


def answer_from_catalog(ctx: TenantContext, texts: Sequence[str]) -> FallbackAnswer:
    parts: list[str] = []
    faqs = sorted(((_hits(texts, f.keywords), i, f) for i, f in enumerate(ctx.faqs)),
                  key=lambda x: (-x[0], x[1]))
    if faqs and faqs[0][0] > 0:
        parts.append(faqs[0][2].answer)
    for service in ctx.services:
        already_told = contains_phrase(" ".join(parts), service.name)
        if not already_told and _hits(texts, (service.name, *service.keywords)) > 0:
            parts.append(f"{service.name}: {service.price_text()}.")
    wants_booking = _hits(texts, BOOKING_WORDS) > 0
    words = set(normalize(" ".join(texts)).split())
    if not parts and words and words <= GREETING_WORDS:
        return FallbackAnswer(GREETING, answered=True)  # a greeting needs no human
    if not parts:
        return FallbackAnswer(HOLDING, answered=False, wants_booking=wants_booking)
    if wants_booking:
        parts.append(BOOKING_NOTE)
    return FallbackAnswer(" ".join(parts), answered=True, wants_booking=wants_booking)
