"""The assistant's tools: what Claude may do in a reply, and the check of every call before
anything is sent.

One request with `tool_choice: {"type": "any"}`: the model answers with one or more `tool_use`
blocks (parallel tool use) and stop_reason "tool_use". The tools act through our own events (the
scheduler books, the dispatcher sends), so the turn ends there: the docs make returning a
`tool_result` optional when the call itself is all the application needs
(https://docs.anthropic.com/claude/docs/legacy-tool-use, "Steps 3 and 4 are optional";
https://platform.claude.com/docs/en/agents-and-tools/tool-use/parallel-tool-use).

`decide` turns the calls into a `Decision` or raises `InvalidToolCall` (unknown tool, input that
does not fit its schema, a service or branch the clinic does not have, a date that is not ISO):
the caller then answers from the catalog, and nothing the model asked for is forwarded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tistis_common.events import ListRow, ListSection, Signal, TemplateRef

from .context import Branch, Service, TenantContext, money
from .signals import normalize

REPLY = "reply_to_patient"
MENU = "show_services_menu"
QUOTE = "send_quote"
BOOK = "book_appointment"
RESCHEDULE = "reschedule_appointment"
CANCEL = "cancel_appointment"
INTEREST = "record_interest"
HANDOVER = "hand_over_to_human"

# A menu row's id comes back as the patient's choice (list row, quick reply payload).
SERVICE_CHOICE_PREFIX = "service:"
MENU_ROWS = 10  # a WhatsApp list holds at most 10 rows
MENU_TITLE = 20  # list rows allow 24, quick replies 20: one title fits every channel
MENU_DESCRIPTION = 72
MENU_BODY_MAX = 1024  # WhatsApp's interactive body
QUOTE_TEMPLATE = "cotizacion_enviada"  # the guide's template: patient_name, services
TEMPLATE_LANGUAGE = "es_MX"

Action = Literal["book", "reschedule", "cancel"]
T = TypeVar("T")


def definitions(clinic: TenantContext) -> list[dict[str, Any]]:
    """The tools offered for this clinic; services and branches are enums of its catalog."""
    service: dict[str, Any] = {"type": "string", "description": "A service of the clinic"}
    if clinic.services:
        service["enum"] = [s.name for s in clinic.services]
    branch: dict[str, Any] = {"type": "string", "description": "A branch of the clinic"}
    if clinic.branches:
        branch["enum"] = [b.name for b in clinic.branches]
    dates = {"type": "array", "items": {"type": "string"},
             "description": "Wished dates or date-times, ISO 8601 in the clinic's local time "
                            "(2026-12-04 or 2026-12-04T10:00), computed from today's date"}
    text = {"type": "string", "description": "The message for the patient, in their language"}

    def tool(name: str, description: str, properties: dict[str, Any],
             required: list[str]) -> dict[str, Any]:
        return {"name": name, "description": description, "input_schema": {
            "type": "object", "properties": properties, "required": required}}

    return [
        tool(REPLY, "Send a text message to the patient.", {"text": text}, ["text"]),
        tool(MENU, "Show the clinic's services as a menu the patient can tap (a list on "
             "WhatsApp, buttons on Messenger/Instagram, numbered lines on TikTok).",
             {"text": text}, []),
        tool(QUOTE, "Send a quote with the catalog prices of the named services. The prices "
             "are added by the system; do not write them yourself.",
             {"services": {"type": "array", "items": service, "minItems": 1}, "text": text},
             ["services"]),
        tool(BOOK, "Ask the scheduler for an appointment: it books the first free slot that "
             "fits the wished dates or offers free slots.",
             {"service": service, "branch": branch, "preferred_dates": dates}, []),
        tool(RESCHEDULE, "Move the patient's next appointment to other dates (the scheduler "
             "offers free slots when none is given or none fits).",
             {"preferred_dates": dates, "branch": branch}, []),
        tool(CANCEL, "Cancel the patient's next appointment and free its slot.",
             {"reason": {"type": "string"}}, []),
        tool(INTEREST, "Record the services the patient is interested in and the lead signals "
             "their latest messages show.",
             {"services": {"type": "array", "items": service},
              "signals": {"type": "array", "items": {"type": "string",
                                                     "enum": [s.value for s in Signal]}}}, []),
        tool(HANDOVER, "Hand the conversation to a person of the clinic (asks for a human, a "
             "complaint, a medical emergency, anything you cannot answer from this context).",
             {"reason": {"type": "string"}, "text": text}, ["reason"]),
    ]


class InvalidToolCall(Exception):
    """A call that does not validate: answered from the catalog, never forwarded."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: dict[str, Any]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _text(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


class ReplyInput(_Input):
    text: str

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty reply")
        return value.strip()


class MenuInput(_Input):
    text: str | None = None


class QuoteInput(_Input):
    services: list[str] = Field(min_length=1)
    text: str | None = None


class BookInput(_Input):
    service: str | None = None
    branch: str | None = None
    preferred_dates: list[str] = Field(default_factory=list)


class RescheduleInput(_Input):
    preferred_dates: list[str] = Field(default_factory=list)
    branch: str | None = None


class CancelInput(_Input):
    reason: str | None = None


class InterestInput(_Input):
    services: list[str] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)

    @field_validator("signals", mode="before")
    @classmethod
    def _known_signals(cls, value: Any) -> Any:
        # An unknown signal name must not cost the patient the reply.
        known = {s.value for s in Signal}
        return [v for v in value or [] if v in known]


class HandOverInput(_Input):
    reason: str = Field(min_length=1)
    text: str | None = None


INPUTS: dict[str, type[_Input]] = {
    REPLY: ReplyInput, MENU: MenuInput, QUOTE: QuoteInput, BOOK: BookInput,
    RESCHEDULE: RescheduleInput, CANCEL: CancelInput, INTEREST: InterestInput,
    HANDOVER: HandOverInput,
}


@dataclass(frozen=True)
class Booking:
    action: Action
    service: Service | None = None
    branch: Branch | None = None
    preferred_dates: tuple[str, ...] = ()


@dataclass
class Decision:
    """What the validated calls ask for, in the order a reply is built."""

    text: str | None = None
    escalation: str | None = None
    menu: bool = False
    quote: list[Service] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)
    interests: list[Service] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # tool names, for logs and the eval


def find_service(clinic: TenantContext, name: str | None) -> Service | None:
    """By name or keyword, case and accent insensitive; a partial name when only one fits."""
    if not name:
        return None
    wanted = normalize(name)
    for s in clinic.services:
        if wanted == normalize(s.name) or wanted in {normalize(k) for k in s.keywords}:
            return s
    partial = [s for s in clinic.services if wanted in normalize(s.name) or normalize(s.name) in wanted]
    return partial[0] if len(partial) == 1 else None


def find_branch(clinic: TenantContext, name: str | None) -> Branch | None:
    if not name:
        return None
    wanted = normalize(name)
    found = [b for b in clinic.branches if wanted == normalize(b.name) or wanted in normalize(b.name)]
    return found[0] if len(found) == 1 else None


def _service(clinic: TenantContext, name: str | None) -> Service | None:
    return _known(name, find_service(clinic, name), "service")


def _branch(clinic: TenantContext, name: str | None) -> Branch | None:
    return _known(name, find_branch(clinic, name), "branch")


def _known(name: str | None, found: T | None, what: str) -> T | None:
    """None when nothing was named; a name the clinic does not have does not validate."""
    if name is not None and found is None:
        raise InvalidToolCall(f"unknown {what} {name!r}")
    return found


def _dates(values: list[str]) -> tuple[str, ...]:
    for value in values:
        try:
            if "T" in value or " " in value:
                datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            else:
                date.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidToolCall(f"not an ISO date: {value!r}") from exc
    return tuple(v.strip() for v in values)


def _validated(call: ToolCall) -> _Input:
    model = INPUTS.get(call.name)
    if model is None:
        raise InvalidToolCall(f"unknown tool {call.name!r}")
    try:
        return model.model_validate(call.input)
    except ValidationError as exc:
        raise InvalidToolCall(f"{call.name}: {str(exc)[:300]}") from exc


def decide(clinic: TenantContext, calls: list[ToolCall]) -> Decision:
    if not calls:
        raise InvalidToolCall("no tool call")
    d = Decision()
    texts: list[str] = []
    for call in calls:
        data = _validated(call)
        d.calls.append(call.name)
        if isinstance(data, ReplyInput):
            texts.append(data.text)
        elif isinstance(data, MenuInput):
            d.menu = True
            texts += [t for t in [_text(data.text)] if t]
        elif isinstance(data, QuoteInput):
            services = [_service(clinic, n) for n in data.services]
            d.quote += [s for s in services if s is not None and s not in d.quote]
            texts += [t for t in [_text(data.text)] if t]
        elif isinstance(data, BookInput):
            d.bookings.append(Booking("book", _service(clinic, data.service),
                                      _branch(clinic, data.branch), _dates(data.preferred_dates)))
        elif isinstance(data, RescheduleInput):
            d.bookings.append(Booking("reschedule", None, _branch(clinic, data.branch),
                                      _dates(data.preferred_dates)))
        elif isinstance(data, CancelInput):
            d.bookings.append(Booking("cancel"))
        elif isinstance(data, InterestInput):
            for name in data.services:
                s = _service(clinic, name)
                if s is not None and s not in d.interests:
                    d.interests.append(s)
            d.signals += [s for s in data.signals if s not in d.signals]
        elif isinstance(data, HandOverInput):
            d.escalation = data.reason.strip()
            texts += [t for t in [_text(data.text)] if t]
    for s in d.quote:  # a quoted service is one the patient is interested in
        if s not in d.interests:
            d.interests.append(s)
    if d.interests and Signal.INTERESTED not in d.signals:
        d.signals.append(Signal.INTERESTED)
    d.text = "\n\n".join(dict.fromkeys(texts)) or None
    return d


# ------------------------------------------------------------------ what the patient gets


def menu_sections(clinic: TenantContext, title: str = "Servicios") -> list[ListSection]:
    rows = [ListRow(id=f"{SERVICE_CHOICE_PREFIX}{s.id}", title=s.name[:MENU_TITLE],
                    description=s.price_text()[:MENU_DESCRIPTION])
            for s in clinic.services[:MENU_ROWS]]
    return [ListSection(title=title, rows=rows)]


def chosen_service(clinic: TenantContext, choice_id: str | None) -> Service | None:
    """The service a tapped menu row names (`service:<id>`)."""
    if not (choice_id or "").startswith(SERVICE_CHOICE_PREFIX):
        return None
    try:
        wanted = uuid.UUID((choice_id or "")[len(SERVICE_CHOICE_PREFIX):])
    except ValueError:
        return None
    return next((s for s in clinic.services if s.id == wanted), None)


def numbered_choice(text: str, menu: dict[str, Any] | None) -> str | None:
    """A bare number answering the last numbered menu (TikTok): the row id it names."""
    if menu is None or not text.strip().rstrip(".").isdigit():
        return None
    rows = [r for s in menu.get("sections") or [] for r in s.get("rows") or []]
    n = int(text.strip().rstrip("."))
    return rows[n - 1]["id"] if 1 <= n <= len(rows) else None


@dataclass(frozen=True)
class Quote:
    services: list[Service]
    currency: str
    total_min: Decimal | None
    total_max: Decimal | None

    def items(self) -> list[dict[str, Any]]:
        return [{"service_id": str(s.id), "name": s.name,
                 "price_min": str(s.price_min) if s.price_min is not None else None,
                 "price_max": str(s.price_max) if s.price_max is not None else None}
                for s in self.services]


def quote(services: list[Service]) -> Quote:
    lows = [s.price_min or s.price_max for s in services]
    highs = [s.price_max or s.price_min for s in services]
    total_min = sum((v for v in lows if v is not None), Decimal(0)) if all(lows) else None
    total_max = sum((v for v in highs if v is not None), Decimal(0)) if all(highs) else None
    return Quote(services, services[0].currency, total_min, total_max)


def quote_text(clinic: TenantContext, q: Quote, today: date, lang: str) -> str:
    head = (f"Quote from {clinic.name} ({today.isoformat()}):" if lang == "en"
            else f"Cotización de {clinic.name} ({today.strftime('%d/%m/%Y')}):")
    lines = [head] + [f"• {s.name}: {money(s.price_min, s.price_max, s.currency, lang)}"
                      for s in q.services]
    if len(q.services) > 1:
        total = money(q.total_min, q.total_max, q.currency, lang)
        lines.append(f"Estimated total: {total}" if lang == "en" else f"Total estimado: {total}")
    lines.append("Prices may vary after your assessment." if lang == "en"
                 else "Los precios pueden variar según tu valoración.")
    return "\n".join(lines)


def quote_template(patient_name: str, q: Quote) -> TemplateRef:
    """`cotizacion_enviada` (patient_name, services): what goes once the 24 h window closed."""
    services = ", ".join(f"{s.name} ({money(s.price_min, s.price_max, s.currency, 'es')})"
                         for s in q.services)
    return TemplateRef(name=QUOTE_TEMPLATE, language=TEMPLATE_LANGUAGE,
                       body_params=[patient_name, services])
