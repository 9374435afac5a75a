"""The responder's own sentences (fallback, holding, opt-out), in the patient's language.

The language is read from the patient's messages (Spanish and English; anything else gets the
clinic's default): a handful of common words of each language are counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from .signals import normalize

Lang = str  # "es" | "en"

_EN = frozenset({"the", "i", "you", "is", "are", "do", "does", "what", "how", "much", "can",
                 "want", "would", "like", "my", "an", "to", "for", "please", "hello", "hi",
                 "thanks", "thank", "cost", "price", "appointment", "book", "where", "when",
                 "cleaning", "need", "have", "your", "it", "this", "tomorrow", "open"})
_ES = frozenset({"el", "la", "los", "las", "que", "de", "es", "un", "una", "por", "para", "con",
                 "quiero", "cuanto", "cuesta", "hola", "gracias", "cita", "donde", "cuando",
                 "tienen", "me", "mi", "y", "en", "precio", "manana", "buenas", "buenos",
                 "limpieza", "favor", "puedo", "hacen", "horario"})


def detect(texts: Sequence[str], default: Lang = "es") -> Lang:
    words = normalize(" ".join(texts)).split()
    en = sum(w in _EN for w in words)
    es = sum(w in _ES for w in words)
    if en > es:
        return "en"
    if es > en:
        return "es"
    return default if default in ("es", "en") else "es"


PHRASES: dict[str, dict[Lang, str]] = {
    "holding": {
        "es": "¡Gracias por escribirnos! En este momento no puedo darte una respuesta completa; "
              "una persona de nuestro equipo te contestará en breve.",
        "en": "Thank you for writing to us! I can't give you a full answer right now; someone "
              "from our team will reply shortly.",
    },
    "greeting": {
        "es": "¡Hola! Gracias por escribirnos. Con gusto te doy información de nuestros "
              "servicios, precios, sucursales y horarios. ¿En qué te puedo ayudar?",
        "en": "Hello! Thanks for writing to us. I'm happy to tell you about our services, "
              "prices, branches and opening hours. How can I help you?",
    },
    "booking_note": {
        "es": "Para agendar tu cita, una persona de nuestro equipo te escribirá en breve.",
        "en": "To book your appointment, someone from our team will write to you shortly.",
    },
    "escalation": {
        "es": "Gracias por tu mensaje. Una persona de nuestro equipo te atenderá en breve.",
        "en": "Thank you for your message. Someone from our team will assist you shortly.",
    },
    "closed": {
        "es": "Estamos fuera de horario; el equipo de la clínica atiende de nuevo {when}.",
        "en": "We are closed right now; the clinic's team is back {when}.",
    },
    "price": {"es": "{name}: {price}.", "en": "{name}: {price}."},
    "menu": {"es": "Estos son nuestros servicios; elige el que te interese.",
             "en": "These are our services; choose the one you are interested in."},
    "book": {"es": "Con gusto, reviso la agenda para tu cita.",
             "en": "Sure, let me check the schedule for your appointment."},
    "reschedule": {"es": "Con gusto, reviso otros horarios para tu cita.",
                   "en": "Sure, let me look for other times for your appointment."},
    "cancel": {"es": "Entendido, cancelo tu cita.", "en": "Understood, I'm cancelling your "
                                                          "appointment."},
    "opted_out": {
        "es": "Listo, ya no te enviaremos mensajes de seguimiento ni promociones. Si quieres "
              "volver a recibirlos, escribe {word}.",
        "en": "Done, we won't send you follow-ups or promotions any more. To receive them "
              "again, write {word}.",
    },
    "opted_in": {
        "es": "¡Bienvenido de nuevo! Volverás a recibir nuestros mensajes. Para dejar de "
              "recibirlos, escribe {word}.",
        "en": "Welcome back! You will receive our messages again. To stop them, write {word}.",
    },
}


def say(key: str, lang: Lang, **values: str) -> str:
    options = PHRASES[key]
    return options.get(lang, options["es"]).format(**values)


def is_word(text: str, words: Sequence[str]) -> str | None:
    """The word the whole message is ("Baja.", " stop ", "BÁJA"), not a sentence using it."""
    plain = normalize(text)
    for word in words:
        if plain and plain == normalize(word):
            return word
    return None
