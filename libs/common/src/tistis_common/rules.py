"""Deterministic lead signals from a message's words, for when no model is available.

Minimal version written by the AI responder (its fallback publishes these with source "rules");
the scorer owns this module and may refine the word lists. Matching is case and accent
insensitive, on whole words or phrases.
"""

from __future__ import annotations

import re
import unicodedata

from tistis_common.events import Signal

_WORDS: dict[Signal, tuple[str, ...]] = {
    Signal.INTERESTED: (
        "cita", "agendar", "quiero", "me interesa", "interesado", "interesada", "informes",
        "informacion", "appointment", "book", "interested",
    ),
    Signal.URGENT: (
        "urgente", "urgencia", "dolor", "me duele", "hoy mismo", "lo antes posible", "emergencia",
        "urgent", "pain", "asap", "emergency",
    ),
    Signal.BUDGET_MENTIONED: (
        "precio", "precios", "cuanto cuesta", "cuanto sale", "costo", "costos", "presupuesto",
        "cotizacion", "pagos", "meses sin intereses", "price", "cost", "budget", "how much",
    ),
    Signal.DECISION_MAKER: (
        "yo decido", "para mi", "soy el dueno", "soy la duena", "mi decision", "i decide",
    ),
    Signal.COMPARING: (
        "otra clinica", "otro lugar", "comparando", "mas barato", "otras opciones", "cotizando",
        "comparing", "cheaper", "another clinic",
    ),
    Signal.NOT_INTERESTED: (
        "no me interesa", "ya no", "no gracias", "dejen de escribir", "no quiero",
        "not interested", "stop", "unsubscribe",
    ),
    Signal.SPAM: (
        "gana dinero", "bitcoin", "criptomoneda", "inversion garantizada", "haz clic",
        "click here", "free money", "crypto",
    ),
}


def normalize(text: str) -> str:
    """Lower case, without accents, single spaces: 'Cuánto CUESTA' -> 'cuanto cuesta'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", plain))


def _has(haystack: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", haystack) is not None


def detect_signals(text: str) -> list[Signal]:
    """The guide's signals a message shows, in the enum's order, each at most once."""
    plain = normalize(text or "")
    if not plain:
        return []
    found = [s for s in Signal if any(_has(plain, normalize(w)) for w in _WORDS[s])]
    if Signal.NOT_INTERESTED in found and Signal.INTERESTED in found:
        found.remove(Signal.INTERESTED)  # "no me interesa" also contains "me interesa"
    return found
