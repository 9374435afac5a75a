"""Rule-based lead signals, so that scoring never depends on the model being up.

`detect_signals(text)` reads one patient message (Spanish or English) and returns the product
guide's signals it finds, in the order of `Signal`, each once. The AI responder calls it when
Claude is off or failing and publishes the result as `LeadSignals(source="rules")`.

Matching is case and accent insensitive ("CUÁNTO" == "cuanto") and on word boundaries ("dolor"
does not match "dolorosa"... but "dolores" does, on purpose). Two rules keep it honest:
- a negation wins over the phrase it contains: "no me interesa" is not_interested, never also
  interested ("me interesa"); the negated span is blanked before the positive rules run;
- a spam message yields only `spam`: a link or a chain letter that says "información" is not a
  lead showing interest.
"""

from __future__ import annotations

import re

from tistis_common.events import Signal
from tistis_common.text import fold

__all__ = ["detect_signals", "normalize"]


def normalize(text: str) -> str:
    """Lower case, without accents, words only, single spaces: '¿Cuánto CUESTA?' -> 'cuanto cuesta'.
    For keyword matching elsewhere (the AI responder's escalation words and service names)."""
    return " ".join(re.findall(r"\w+", fold(text)))


def _words(*phrases: str) -> re.Pattern[str]:
    """One pattern of alternatives, each bounded by word edges; phrases are regexes themselves
    and written without accents (they match the normalized text)."""
    return re.compile(r"(?<!\w)(?:" + "|".join(phrases) + r")(?!\w)")


# -- not interested (checked first: its spans are removed before the positive rules) ----------
NOT_INTERESTED = _words(
    r"no me interesa(?:n)?", r"ya no me interesa(?:n)?", r"no estoy interesad[oa]s?",
    r"no (?:estoy|estamos) buscando", r"ya no quiero", r"no quiero nada",
    r"dejen de (?:escribirme|enviarme|mandarme)", r"no me (?:escriban|contacten)",
    r"not interested", r"no longer interested", r"i(?:'| a)m not interested",
    r"stop (?:texting|messaging|contacting) me", r"don'?t (?:contact|text|message) me",
)

# -- spam: links, chain-letter phrases, repetition -----------------------------------------
LINK = re.compile(
    r"https?://\S+|(?<![\w@.-])www\.\S+"
    # a bare domain, but not an e-mail address (maria@gmail.com is a patient, not a link)
    r"|(?<![\w@.-])[a-z0-9-]+(?:\.[a-z0-9-]+)*\."
    r"(?:com|net|org|ly|io|xyz|info|biz|ru|top|click|site|online|mx)(?:/\S*)?(?!\w)"
)
# Links a patient sends to say where they are or how to get there (a pin from Google Maps,
# Apple Maps or Waze): location, not spam.
PLACE_LINK = re.compile(
    r"(?:https?://)?(?:www\.)?(?:maps\.google\.[a-z.]+|google\.[a-z.]+/maps|maps\.app\.goo\.gl"
    r"|goo\.gl/maps|maps\.apple\.com|(?:ul\.)?waze\.com)(?:[/?]\S*)?"
)
SPAM_PHRASES = _words(
    r"gana(?:r)? dinero", r"dinero facil", r"ingresos extra", r"trabaja desde casa",
    r"inversion (?:garantizada|segura)", r"criptomonedas?", r"bitcoin", r"casino", r"apuestas",
    r"seguidores gratis", r"haz clic", r"da clic", r"click aqui", r"prestamos? inmediatos?",
    r"felicidades,? (?:has|ha) ganado",
    r"earn money", r"make money", r"easy money", r"work from home", r"free followers",
    r"click here", r"crypto", r"you(?:'ve| have) won", r"congratulations,? you", r"viagra",
)
# Repetition, at levels a patient does not reach by accident ("no no no" and "??????" are fine):
# a word five times in a row, a phrase of two to six words three times, one character 15 times.
REPEATED_WORD = re.compile(r"(?<!\w)(\w+)(?:\W+\1(?!\w)){4,}")
REPEATED_PHRASE = re.compile(r"(?<!\w)((?:\w+\W+){1,5}\w+)(?:\W+\1(?!\w)){2,}")
REPEATED_CHAR = re.compile(r"(\S)\1{14,}")
# Longer messages are read only this far (the patterns above stay cheap).
MAX_CHARS = 4000

# -- positive signals ------------------------------------------------------------------------
RULES: tuple[tuple[Signal, re.Pattern[str]], ...] = (
    (Signal.INTERESTED, _words(
        r"(?:quiero|quisiera|queria|necesito|me gustaria) (?:una|otra|mi) cita",
        r"(?:agendar|sacar|hacer|reservar|programar) (?:una )?cita", r"me interesa(?:n|ria)?",
        r"estoy interesad[oa]s?", r"informacion", r"informes", r"mas info", r"me pueden informar",
        r"i(?:'d| would)? like (?:an|to book an|to make an) appointment",
        r"i want (?:an|to book an) appointment", r"(?:book|schedule|make) an appointment",
        r"i(?:'m| am) interested", r"interested in", r"information", r"more info",
    )),
    (Signal.URGENT, _words(
        r"urgente", r"urgencia", r"dolor(?:es)?", r"me duele(?:n)?", r"duele mucho",
        r"emergencia", r"lo antes posible", r"hoy mismo", r"cuanto antes", r"no aguanto",
        r"urgent(?:ly)?", r"pain(?:ful)?", r"it hurts", r"hurts", r"emergency", r"asap",
        r"as soon as possible", r"right away", r"toothache",
    )),
    (Signal.BUDGET_MENTIONED, _words(
        r"cuanto (?:cuesta(?:n)?|cobran|sale(?:n)?|vale(?:n)?|es)", r"precios?", r"presupuestos?",
        r"costos?", r"cotizacion(?:es)?", r"tarifas?", r"mensualidades", r"meses sin intereses",
        r"how much", r"prices?", r"pricing", r"costs?", r"budget", r"quote", r"fees?",
        r"payment plan",
        # an amount: $1,500 / 1500 pesos / 200 usd / MXN 800
        r"\$ ?\d[\d,.]*", r"\d[\d,.]* ?(?:pesos|mxn|usd|dolares|dollars|dlls)",
        r"(?:mxn|usd) ?\d[\d,.]*",
    )),
    (Signal.DECISION_MAKER, _words(
        r"yo decido", r"yo soy (?:quien|el que|la que) decide", r"la decision es mia",
        r"para mi y (?:mi|mis) (?:familia|esposa|esposo|hijos|hijas)", r"soy (?:el|la) titular",
        r"yo pago", r"yo me encargo del pago", r"soy (?:el dueno|la duena)",
        r"i decide", r"i(?:'m| am) the (?:one who decides|decision maker|account holder|"
        r"policy ?holder)", r"i make the decisions?", r"for me and my (?:family|wife|husband|kids)",
        r"i(?:'ll| will) pay",
    )),
    (Signal.COMPARING, _words(
        r"(?:estoy |estamos )?comparando", r"otras? clinicas?", r"otros? dentistas?",
        r"otros? consultorios?", r"otros? doctor(?:es)?", r"cotizacion de otr[oa]",
        r"en otro (?:lado|lugar)", r"otras opciones", r"mas barato", r"me cobran", r"cotizando",
        r"comparing", r"(?:another|other) (?:clinics?|dentists?|offices?)",
        r"quote from (?:another|other)", r"cheaper", r"shopping around",
    )),
)


def _has_link(normalized: str) -> bool:
    return any(not PLACE_LINK.fullmatch(m.group()) for m in LINK.finditer(normalized))


def _is_spam(normalized: str) -> bool:
    return bool(
        _has_link(normalized)
        or SPAM_PHRASES.search(normalized)
        or REPEATED_WORD.search(normalized)
        or REPEATED_PHRASE.search(normalized)
        or REPEATED_CHAR.search(normalized)
    )


def detect_signals(text: str) -> list[Signal]:
    """The guide's signals in one message, each once, in the order of `Signal`."""
    normalized = fold((text or "")[:MAX_CHARS])
    if not normalized.strip():
        return []
    if _is_spam(normalized):
        return [Signal.SPAM]
    found: set[Signal] = set()
    if NOT_INTERESTED.search(normalized):
        found.add(Signal.NOT_INTERESTED)
        normalized = NOT_INTERESTED.sub(" ", normalized)
    for signal, pattern in RULES:
        if pattern.search(normalized):
            found.add(signal)
    return [s for s in Signal if s in found]
