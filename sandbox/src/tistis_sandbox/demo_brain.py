"""The sandbox's demo brain: a FAKE model, a few keyword rules, clearly labelled "[demo]".

When nothing is scripted and the request offers the assistant's tools, the fake Anthropic API
answers with the same tool calls a real model would make on recognisable intents (price, menu,
book, reschedule, cancel, complaint, where, when), so that `SANDBOX_AI=1 make run` and
`tistis-sandbox play` walk through a booking, a quote and an escalation with the real pipeline.
It reads only what the request carries: the tools' enums (services, branches), the system
prompt (addresses, opening hours, today's local date) and the patient's last turn. It is not a
model and is not meant to sound like one; the evaluation set runs against it to check the
plumbing (`make test`) and against the real API to check the model (`make eval`).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta
from typing import Any

LABEL = "[demo]"

WEEKDAYS = {"lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
            "domingo": 6, "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3,
            "friday": 4, "saturday": 5, "sunday": 6}
HUMAN = ("persona", "humano", "asesor", "agente", "queja", "reclamo", "pesimo", "human",
         "person", "agent", "complaint", "manager", "terrible")
CANCEL = ("cancelar", "cancela", "cancelo", "cancel")
RESCHEDULE = ("reprogramar", "reagendar", "cambiar mi cita", "mover mi cita", "cambiar la cita",
              "otro dia", "reschedule", "change my appointment", "move my appointment")
MENU = ("menu", "servicios", "que ofrecen", "tratamientos", "services", "what do you offer",
        "treatments")
BOOK = ("cita", "agendar", "agenda", "reservar", "turno", "appointment", "book", "booking")
PRICE = ("precio", "precios", "cuanto", "cuesta", "costo", "cotizacion", "cotizar", "price",
         "prices", "cost", "how much", "quote")
WHERE = ("donde", "direccion", "ubicacion", "ubicados", "where", "address", "location")
WHEN = ("horario", "horarios", "abren", "cierran", "hours", "open", "close")
URGENT = ("urgente", "dolor", "duele", "sangra", "urgent", "pain", "hurts", "bleeding")
ENGLISH = ("the", "i", "you", "what", "how", "much", "want", "would", "like", "my", "please",
           "hello", "hi", "where", "when", "appointment", "book", "cost", "price", "tomorrow",
           "cleaning", "need", "can")


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.findall(r"[\w:#]+", plain))


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text) for w in words)


def _tool(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in body.get("tools") or [] if t.get("name") == name), None)


def _enum(body: dict[str, Any], tool: str, prop: str) -> list[str]:
    found = _tool(body, tool)
    if found is None:
        return []
    schema = found["input_schema"]["properties"].get(prop) or {}
    schema = schema.get("items", schema)
    return list(schema.get("enum") or [])


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    return "\n".join(b.get("text", "") for b in system or [] if isinstance(b, dict))


def _last_user(body: dict[str, Any]) -> str:
    for msg in reversed(body["messages"]):
        if msg["role"] == "user":
            content = msg["content"]
            if isinstance(content, str):
                return content
            return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


def today_of(system: str) -> date:
    found = re.search(r"fecha local (\d{4}-\d{2}-\d{2})", system)
    return date.fromisoformat(found.group(1)) if found else date.today()


def _time(text: str) -> str | None:
    found = (re.search(r"(?<!\d)(\d{1,2}):(\d{2})(?:\s*(am|pm))?", text)
             or re.search(r"(?:a las|at)\s+(\d{1,2})(?::(\d{2}))?(?:\s*(am|pm))?", text)
             or re.search(r"(?<!\d)(\d{1,2})()\s*(am|pm)(?!\w)", text))
    if not found:
        return None
    hour, minute = int(found.group(1)), int(found.group(2) or 0)
    afternoon = found.group(3) == "pm" or "de la tarde" in text or "in the afternoon" in text
    if afternoon and hour < 12:
        hour += 12
    return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else None


def dates(text: str, today: date) -> list[str]:
    """Relative dates of the patient's words, as the model is asked to give them (ISO, local)."""
    day: date | None = None
    iso = re.search(r"(\d{4})-(\d{2})-(\d{2})", text)
    if iso:
        day = date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    elif _has(text, ("pasado manana", "day after tomorrow")):
        day = today + timedelta(days=2)
    elif _has(text, ("manana", "tomorrow")) and not _has(text, ("en la manana", "por la manana")):
        day = today + timedelta(days=1)
    elif _has(text, ("hoy", "today")):
        day = today
    else:
        for name, weekday in WEEKDAYS.items():
            if _has(text, (name,)):
                ahead = (weekday - today.weekday()) % 7 or 7
                day = today + timedelta(days=ahead)
                break
    if day is None:
        return []
    at = _time(text)
    return [f"{day.isoformat()}T{at}" if at else day.isoformat()]


SYNONYMS = {"cleaning": "limpieza", "whitening": "blanqueamiento", "implant": "implante",
            "implants": "implantes", "braces": "ortodoncia", "extraction": "extraccion",
            "checkup": "consulta", "brackets": "ortodoncia"}


def _mentioned(text: str, names: list[str]) -> list[str]:
    """Services named in the text: the whole name, or a word sharing its first word's stem."""
    words = [SYNONYMS.get(w, w) for w in text.split()]
    found = []
    for name in names:
        stem = fold(name).split()[0][:6]
        if fold(name) in text or any(len(w) > 4 and w.startswith(stem) for w in words):
            found.append(name)
    return found


def _branch_lines(system: str) -> list[str]:
    block = system.split("Sucursales:", 1)[-1].split("\n\n", 1)[0]
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def _chosen(system: str) -> str | None:
    found = re.search(r"eligió «([^»]+)»", system)
    return found.group(1) if found else None


def decide(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls for this request, as (name, input); only tools the request offers."""
    system = _system_text(body)
    raw = _last_user(body)
    text = fold(raw)
    english = sum(w in ENGLISH for w in text.split()) > 0 and not _has(text, ("hola", "quiero"))
    services = _enum(body, "send_quote", "services")
    branches = _enum(body, "book_appointment", "branch")
    chosen = _chosen(system)
    wanted = [chosen] if chosen in services else _mentioned(text, services)
    branch = next((b for b in branches if _has(text, tuple(fold(b).split()[-1:]))), None)
    when = dates(text, today_of(system))
    signals = ["urgent"] if _has(text, URGENT) else []

    def say(es: str, en: str) -> dict[str, Any]:
        return {"text": f"{LABEL} {en if english else es}"}

    calls: list[tuple[str, dict[str, Any]]] = []
    if wanted or signals:
        calls.append(("record_interest", {"services": wanted, "signals": signals}))
    if _has(text, HUMAN):
        calls.append(("hand_over_to_human", {
            "reason": "complaint or asks for a person",
            **say("Te paso con una persona del equipo.", "I'm passing you to a person.")}))
    elif _has(text, CANCEL):
        calls.append(("cancel_appointment", {"reason": raw[:100]}))
        calls.append(("reply_to_patient", say("Cancelo tu cita.", "Cancelling your appointment.")))
    elif _has(text, RESCHEDULE):
        calls.append(("reschedule_appointment", {"preferred_dates": when}))
        calls.append(("reply_to_patient", say("Busco otro horario para tu cita.",
                                              "Looking for another time for you.")))
    elif _has(text, BOOK) or signals:  # pain: an assessment as soon as possible
        ask: dict[str, Any] = {"preferred_dates": when}
        if wanted:
            ask["service"] = wanted[0]
        if branch:
            ask["branch"] = branch
        calls.append(("book_appointment", ask))
        calls.append(("reply_to_patient", say("Reviso la agenda para tu cita.",
                                              "Checking the schedule for you.")))
    elif wanted and (_has(text, PRICE) or chosen or len(text.split()) <= 4):
        calls.append(("send_quote", {"services": wanted, **say("Aquí tienes tu cotización.",
                                                               "Here is your quote.")}))
    elif _has(text, MENU) or _has(text, PRICE):
        calls.append(("show_services_menu", say("Estos son nuestros servicios.",
                                                "These are our services.")))
    elif _has(text, WHERE):
        lines = "; ".join(_branch_lines(system))
        calls.append(("reply_to_patient", say(f"Nuestras sucursales: {lines}.",
                                              f"Our branches: {lines}.")))
    elif _has(text, WHEN):
        hours = re.search(r"Horario de atención por chat: ([^\n]+)", system)
        told = hours.group(1) if hours else "-"
        calls.append(("reply_to_patient", say(f"Nuestro horario: {told}.",
                                              f"Our opening hours: {told}.")))
    else:
        quoted = " ".join(raw.split())[:200]
        calls.append(("reply_to_patient", say(
            f"Recibí: «{quoted}». Soy el asistente de demostración: pregúntame por precios, "
            "servicios o citas.",
            f"I got: «{quoted}». I am the demo assistant: ask me about prices, services or "
            "appointments.")))
    offered = {t.get("name") for t in body.get("tools") or []}
    return [(name, data) for name, data in calls if name in offered]


def offers_assistant_tools(body: dict[str, Any]) -> bool:
    names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    return {"reply_to_patient", "send_quote"} <= names
