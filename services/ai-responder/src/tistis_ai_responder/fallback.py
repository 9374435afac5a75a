"""The deterministic answer when no model may be called (no key, provider off, circuit open).

It answers only what the clinic wrote down: an FAQ whose keywords appear in the patient's
messages, or a service's price. Anything else gets a holding message and goes to a human.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .context import TenantContext
from .phrases import Lang, say
from .policy import contains_phrase
from .signals import normalize

GREETING_WORDS = frozenset({"hola", "buenas", "buenos", "dias", "tardes", "noches", "buen", "dia",
                            "hello", "hi", "que", "tal", "saludos"})
BOOKING_NOTE = say("booking_note", "es")
BOOKING_WORDS = ("cita", "agendar", "agenda", "reservar", "appointment", "book")


@dataclass(frozen=True)
class FallbackAnswer:
    text: str
    answered: bool  # False: only a holding message, a human must take over
    wants_booking: bool = False  # the fallback cannot book: a human must follow up


def _hits(texts: Sequence[str], keywords: Sequence[str]) -> int:
    return sum(1 for k in keywords if any(contains_phrase(t, k) for t in texts))


def answer_from_catalog(clinic: TenantContext, texts: Sequence[str],
                        lang: Lang = "es") -> FallbackAnswer:
    parts: list[str] = []
    faqs = sorted(((_hits(texts, f.keywords), i, f) for i, f in enumerate(clinic.faqs)),
                  key=lambda x: (-x[0], x[1]))
    if faqs and faqs[0][0] > 0:
        parts.append(faqs[0][2].answer)
    for service in clinic.services:
        already_told = contains_phrase(" ".join(parts), service.name)
        if not already_told and _hits(texts, (service.name, *service.keywords)) > 0:
            parts.append(say("price", lang, name=service.name,
                             price=service.price_text(lang)))
    wants_booking = _hits(texts, BOOKING_WORDS) > 0
    words = set(normalize(" ".join(texts)).split())
    if not parts and words and words <= GREETING_WORDS:
        return FallbackAnswer(say("greeting", lang), answered=True)  # a greeting needs no human
    if not parts:
        return FallbackAnswer(say("holding", lang), answered=False, wants_booking=wants_booking)
    if wants_booking:
        parts.append(say("booking_note", lang))
    return FallbackAnswer(" ".join(parts), answered=True, wants_booking=wants_booking)
