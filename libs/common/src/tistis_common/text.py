"""Text as the services compare it: the one way accents and case are taken out, so that a
patient's "Cuánto", a stop word "BAJA" and a service "Ortodoncía" match what we wrote. Each
caller decides what else it drops (punctuation, extra spaces)."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower case without accents, everything else kept: '¿Cuánto CUESTA?' -> '¿cuanto cuesta?'.
    ñ becomes n, which is harmless for matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
