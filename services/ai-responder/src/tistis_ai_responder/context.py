"""What the model is told: the clinic's stable context (cached) and the conversation so far."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

DEFAULT_PROMPT = (
    "Eres el asistente virtual profesional de una clínica dental. Respondes con amabilidad, "
    "claridad y precisión, y ayudas a los pacientes a agendar citas."
)
DEFAULT_HOURS: dict[str, Any] = {
    "timezone": "America/Mexico_City", **{d: [["09:00", "18:00"]] for d in
                                          ("mon", "tue", "wed", "thu", "fri")},
}

RULES = """Reglas:
- Responde siempre en el idioma del paciente (español si no está claro), breve y cálido, \
como un mensaje de chat.
- Usa solo los precios, sucursales, horarios y respuestas de este contexto; si no sabes algo, \
dilo y ofrece que alguien del equipo le confirme. Nunca inventes precios ni diagnósticos.
- Si el paciente escribió varios mensajes seguidos, contéstalos todos en una sola respuesta.
- Actúa con las herramientas; puedes usar varias a la vez:
  - reply_to_patient para contestar con texto;
  - show_services_menu si pregunta qué servicios hay o no sabe qué necesita;
  - send_quote si pide precios o una cotización de servicios concretos (el sistema añade los \
precios del catálogo);
  - book_appointment si quiere una cita (con el servicio, la sucursal y las fechas que dijo; \
sin fechas el sistema le ofrece horarios), reschedule_appointment si quiere cambiar su cita, \
cancel_appointment si quiere cancelarla;
  - record_interest con los servicios que le interesan y sus señales: interested, urgent, \
budget_mentioned, decision_maker, comparing, not_interested, spam;
  - hand_over_to_human si pide hablar con una persona, tiene una queja o una urgencia médica.
- Las fechas van en ISO (2026-12-04 o 2026-12-04T10:00), en la hora local de la clínica, \
calculadas a partir de la fecha de hoy que se indica abajo ("mañana", "el viernes")."""


def money(low: Decimal | None, high: Decimal | None, currency: str, lang: str = "es") -> str:
    """'$600 a $900 MXN' ('$600 to $900 MXN'), '$300 MXN', or 'precio a consultar'."""
    if low is None and high is None:
        return "price on request" if lang == "en" else "precio a consultar"
    low, high = low or high, high or low
    if low == high:
        return f"${low:,.0f} {currency}"
    return f"${low:,.0f} {'to' if lang == 'en' else 'a'} ${high:,.0f} {currency}"


@dataclass(frozen=True)
class Service:
    id: uuid.UUID
    name: str
    description: str | None
    price_min: Decimal | None
    price_max: Decimal | None
    currency: str
    duration_minutes: int
    keywords: tuple[str, ...]

    def price_text(self, lang: str = "es") -> str:
        return money(self.price_min, self.price_max, self.currency, lang)


@dataclass(frozen=True)
class Branch:
    id: uuid.UUID
    name: str
    address: str | None
    phone: str | None
    opening_hours: Mapping[str, Any]


@dataclass(frozen=True)
class Faq:
    question: str
    answer: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class TenantContext:
    tenant_id: uuid.UUID
    name: str
    timezone: str
    system_prompt: str
    temperature: float
    max_tokens: int
    response_style: str
    business_hours: Mapping[str, Any]
    escalation_keywords: tuple[str, ...]
    auto_escalate_after: int
    provider: str  # claude | n8n | off
    model: str
    language: str
    services: tuple[Service, ...] = field(default=())
    branches: tuple[Branch, ...] = field(default=())
    faqs: tuple[Faq, ...] = field(default=())
    opt_out_words: tuple[str, ...] = ("STOP", "BAJA")
    opt_in_words: tuple[str, ...] = ("START", "ALTA")

    @classmethod
    def from_rows(cls, tenant_id: uuid.UUID, row: Mapping[str, Any],
                  catalog: Mapping[str, Sequence[Mapping[str, Any]]],
                  default_model: str, opt_out_words: Sequence[str] = ("STOP", "BAJA"),
                  opt_in_words: Sequence[str] = ("START", "ALTA")) -> TenantContext:
        def get(key: str, default: Any) -> Any:
            value = row.get(key)
            return default if value is None else value

        return cls(
            tenant_id=tenant_id,
            name=row["tenant_name"],
            timezone=row["timezone"],
            system_prompt=get("system_prompt", DEFAULT_PROMPT),
            temperature=round(float(get("temperature", 0.7)), 3),  # `real` column: 0.699999988
            max_tokens=int(get("max_tokens", 500)),
            response_style=get("response_style", "professional"),
            business_hours=get("business_hours", DEFAULT_HOURS),
            escalation_keywords=tuple(get("escalation_keywords", ("urgent", "complaint"))),
            auto_escalate_after=int(get("auto_escalate_after_messages", 5)),
            provider=get("ai_provider", "claude"),
            model=get("model", default_model),
            language=get("language", "es"),
            services=tuple(Service(s["id"], s["name"], s["description"], s["price_min"],
                                   s["price_max"], s["currency"], s["duration_minutes"],
                                   tuple(s["keywords"] or ())) for s in catalog["services"]),
            branches=tuple(Branch(b["id"], b["name"], b["address"], b["phone"],
                                  b["opening_hours"] or {}) for b in catalog["branches"]),
            faqs=tuple(Faq(f["question"], f["answer"], tuple(f["keywords"] or ()))
                       for f in catalog["faqs"]),
            opt_out_words=tuple(get("opt_out_words", opt_out_words)),
            opt_in_words=tuple(get("opt_in_words", opt_in_words)),
        )


class ContextCache:
    """The last context read per tenant, with the `tenants.context_version` it was read at
    (triggers move the version on every edit, so a stale entry is never used)."""

    def __init__(self) -> None:
        self._held: dict[uuid.UUID, tuple[int, TenantContext]] = {}

    def get(self, tenant_id: uuid.UUID, version: int) -> TenantContext | None:
        held = self._held.get(tenant_id)
        return held[1] if held is not None and held[0] == version else None

    def put(self, tenant_id: uuid.UUID, version: int, clinic: TenantContext) -> None:
        self._held[tenant_id] = (version, clinic)


def _hours_text(hours: Mapping[str, Any]) -> str:
    days = {"mon": "lun", "tue": "mar", "wed": "mié", "thu": "jue", "fri": "vie", "sat": "sáb",
            "sun": "dom"}
    parts = [f"{label} " + ", ".join(f"{a}-{b}" for a, b in hours[d])
             for d, label in days.items() if hours.get(d)]
    return "; ".join(parts) or "sin horario registrado"


def stable_block(clinic: TenantContext) -> str:
    """Everything that only changes when the clinic edits its setup: the cacheable prefix."""
    lines = [clinic.system_prompt.strip(), "", f"Clínica: {clinic.name}.",
             f"Estilo de respuesta: {clinic.response_style}.",
             f"Idioma por defecto: {clinic.language}.", "",
             f"Horario de atención por chat: {_hours_text(clinic.business_hours)} "
             f"(zona {clinic.business_hours.get('timezone') or clinic.timezone}).", "", "Servicios:"]
    for s in clinic.services:
        extra = f" — {s.description}" if s.description else ""
        lines.append(f"- {s.name}: {s.price_text()}, {s.duration_minutes} min{extra}")
    lines += ["", "Sucursales:"]
    for b in clinic.branches:
        where = f", {b.address}" if b.address else ""
        phone = f", tel. {b.phone}" if b.phone else ""
        lines.append(f"- {b.name}{where}{phone}; horario: {_hours_text(b.opening_hours)}")
    lines += ["", "Preguntas frecuentes:"]
    for f in clinic.faqs:
        lines.append(f"- P: {f.question}\n  R: {f.answer}")
    lines += ["", RULES]
    return "\n".join(lines)


def system_blocks(clinic: TenantContext, situation: str) -> list[dict[str, Any]]:
    """Stable block first with the cache breakpoint; the per-request situation after it."""
    return [
        {"type": "text", "text": stable_block(clinic), "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": situation},
    ]


_PLACEHOLDERS = {"image": "[imagen]", "audio": "[audio]", "video": "[video]",
                 "document": "[documento]", "sticker": "[sticker]", "location": "[ubicación]",
                 "contacts": "[contacto]", "reaction": "[reacción]", "share": "[publicación]",
                 "link": "[enlace]", "order": "[pedido]", "flow": "[formulario enviado]",
                 "unsupported": "[mensaje que la plataforma no muestra]",
                 "referral": "[llegó desde un anuncio o enlace]", "unsend": "[mensaje borrado]",
                 "edit": "[mensaje editado]", "system": "[aviso de la plataforma]"}


def conversation_messages(rows: Sequence[Mapping[str, Any]],
                          nudge: str | None = None) -> list[dict[str, Any]]:
    """History as alternating user/assistant turns, starting with the patient.

    Consecutive messages of one side are joined (a burst is one turn). `nudge` is appended as a
    user turn when the history would otherwise end with the clinic (staff asked for a reply).
    """
    turns: list[dict[str, Any]] = []
    for row in rows:
        role = "user" if row["direction"] == "inbound" and row["sender_type"] == "lead" else "assistant"
        text = (row["content"] or "").strip() or _PLACEHOLDERS.get(row["kind"], "[mensaje]")
        if not turns and role == "assistant":
            continue
        # A patient's photo or PDF (tistis_ai_responder.content): its blocks, then its text.
        content: str | list[dict[str, Any]] = text
        if role == "user" and row.get("blocks"):
            content = [*row["blocks"], {"type": "text", "text": text}]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _joined(turns[-1]["content"], content)
        else:
            turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] == "assistant":
        turns.append({"role": "user", "content": nudge or "(sin mensaje nuevo)"})
    return turns



def _joined(first: str | list[dict[str, Any]],
            second: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Two pieces of one turn: text joined by a line, or content blocks one after the other."""
    if isinstance(first, str) and isinstance(second, str):
        return f"{first}\n{second}"
    as_blocks = [first] if isinstance(first, str) else first
    more = [second] if isinstance(second, str) else second
    return [*({"type": "text", "text": b} if isinstance(b, str) else b for b in as_blocks),
            *({"type": "text", "text": b} if isinstance(b, str) else b for b in more)]
