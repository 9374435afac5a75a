"""WhatsApp Cloud API messages (`POST /{version}/{phone_number_id}/messages`): the guide's
helpers in one module.

Body builders (`text_body`, `buttons_body`, `list_body`, `template_body`, `media_body`) check
Meta's limits and raise `Unsendable` instead of letting the platform refuse (or, worse, of
cutting text); `send_*` post them; the clinic's helpers (`send_appointment_confirmation`,
`send_appointment_reminder`, `send_services_menu`, ...) are built on the guide's templates.
`template_*` return the `TemplateRef` other services put into an `OutboundMessage`.
Limits: text 4096; interactive body 1024; reply buttons 1-3 with titles <= 20 and ids <= 256;
lists: button <= 20, 1-10 sections, <= 10 rows in all, row title <= 24, description <= 72,
id <= 200, section title <= 24 (required with several sections); media caption <= 1024.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tistis_common.events import Button, ListRow, ListSection, MediaRef, OutboundMessage, TemplateRef
from tistis_common.vocabulary import TEMPLATE_LANGUAGE, Template

from tistis_dispatcher.platform import Account, PlatformClient
from tistis_dispatcher.text import split_text

TEXT_MAX = 4096
BODY_MAX = 1024
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
SECTIONS_MAX = 10
ROWS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
SECTION_TITLE_MAX = 24
CAPTION_MAX = 1024


class Unsendable(Exception):
    """The message cannot be sent as asked: `reason` is `too_long` or `unsupported`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def fit(value: str, limit: int, what: str) -> str:
    if not value:
        raise Unsendable("unsupported", f"{what} is empty")
    if len(value) > limit:
        raise Unsendable("too_long", f"{what} has {len(value)} characters (at most {limit})")
    return value


def _envelope(to: str, kind: str, content: dict[str, Any]) -> dict[str, Any]:
    # A phone number (wa_id) goes in `to`; a business-scoped user id (a username user without
    # a phone number, "CC.digits") in `recipient` (docs.kapso.ai/docs/whatsapp/
    # business-scoped-user-ids.md; dualhook.com/docs/contacts-bsuid-webhooks).
    field = "to" if to.isascii() and to.lstrip("+").isdigit() else "recipient"
    return {"messaging_product": "whatsapp", "recipient_type": "individual", field: to,
            "type": kind, kind: content}


_PARAM_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_PARAM_SPACES = re.compile(r"[\t ]{2,}")


def template_parameter(value: str) -> str:
    """Meta refuses a template parameter with a newline, a tab or more than four consecutive
    spaces ("Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
    github.com/netflie/whatsapp-cloud-api/issues/201): a multi-line branch address becomes one
    line, "Av. Juárez 1, Centro"."""
    return _PARAM_SPACES.sub(" ", _PARAM_BREAKS.sub(", ", value.replace("\t", " ")).strip())


# ------------------------------------------------------------------------- bodies


def text_body(to: str, text: str, preview_url: bool = False) -> dict[str, Any]:
    return _envelope(to, "text", {"body": fit(text, TEXT_MAX, "text"),
                                  "preview_url": preview_url})


def buttons_body(to: str, text: str, buttons: Sequence[Button]) -> dict[str, Any]:
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise Unsendable("unsupported", f"{len(buttons)} reply buttons (1 to {BUTTONS_MAX})")
    return _envelope(to, "interactive", {
        "type": "button",
        "body": {"text": fit(text, BODY_MAX, "body")},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": fit(b.id, BUTTON_ID_MAX, "button id"),
                                        "title": fit(b.title, BUTTON_TITLE_MAX, "button title")}}
            for b in buttons
        ]},
    })


def _row(row: ListRow) -> dict[str, Any]:
    out = {"id": fit(row.id, ROW_ID_MAX, "row id"),
           "title": fit(row.title, ROW_TITLE_MAX, "row title")}
    if row.description:
        out["description"] = fit(row.description, ROW_DESCRIPTION_MAX, "row description")
    return out


def list_body(to: str, text: str, button: str, sections: Sequence[ListSection]) -> dict[str, Any]:
    if not 1 <= len(sections) <= SECTIONS_MAX:
        raise Unsendable("unsupported", f"{len(sections)} list sections (1 to {SECTIONS_MAX})")
    rows = sum(len(s.rows) for s in sections)
    if not 1 <= rows <= ROWS_MAX:
        raise Unsendable("unsupported", f"{rows} list rows (1 to {ROWS_MAX} in all sections)")
    out_sections = []
    for section in sections:
        out: dict[str, Any] = {"rows": [_row(r) for r in section.rows]}
        if section.title or len(sections) > 1:
            out["title"] = fit(section.title, SECTION_TITLE_MAX, "section title")
        out_sections.append(out)
    return _envelope(to, "interactive", {
        "type": "list",
        "body": {"text": fit(text, BODY_MAX, "body")},
        "action": {"button": fit(button, LIST_BUTTON_MAX, "list button"),
                   "sections": out_sections},
    })


def template_body(to: str, template: TemplateRef) -> dict[str, Any]:
    """Body parameters, then one `button` component per quick-reply payload
    (`sub_type: quick_reply`, `index` as a string, a `payload` parameter; Cloud API template
    components: github api-evangelist/whatsapp json-schema/whatsapp-cloud-api-template-component)."""
    content: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    components: list[dict[str, Any]] = []
    if template.body_params:
        components.append({"type": "body", "parameters": [
            {"type": "text", "text": fit(template_parameter(p), TEXT_MAX, "template parameter")}
            for p in template.body_params
        ]})
    components += [{"type": "button", "sub_type": "quick_reply", "index": str(i),
                    "parameters": [{"type": "payload",
                                    "payload": fit(payload, BUTTON_ID_MAX, "button payload")}]}
                   for i, payload in enumerate(template.button_payloads)]
    if components:
        content["components"] = components
    return _envelope(to, "template", content)


def media_body(to: str, media_type: str, media: MediaRef) -> dict[str, Any]:
    if media_type not in ("image", "audio", "video", "document"):
        raise Unsendable("unsupported", f"media type {media_type}")
    if not media.url and not media.id:
        raise Unsendable("unsupported", "media without a link")
    content: dict[str, Any] = {"link": media.url} if media.url else {"id": media.id}
    if media.caption and media_type != "audio":
        content["caption"] = fit(media.caption, CAPTION_MAX, "caption")
    if media.filename and media_type == "document":
        content["filename"] = media.filename
    return _envelope(to, media_type, content)


def render(event: OutboundMessage, to: str, max_parts: int) -> list[dict[str, Any]]:
    """The bodies for one outbound message (a long text becomes several, split by sentence)."""
    text = event.text or ""
    if event.kind == "text":
        return [text_body(to, part) for part in split_text(fit(text, 10**9, "text"), TEXT_MAX,
                                                            max_parts)]
    if event.kind in ("buttons", "quick_replies"):
        if len(event.buttons) <= BUTTONS_MAX:
            return [buttons_body(to, text, event.buttons)]
        # More choices than reply buttons: a list holds up to 10.
        rows = [ListRow(id=b.id, title=b.title) for b in event.buttons]
        return [list_body(to, text, event.list_button or "Opciones", [ListSection(title="", rows=rows)])]
    if event.kind == "list":
        return [list_body(to, text, event.list_button or "Ver opciones", event.sections)]
    if event.kind == "template" and event.template is not None:
        return [template_body(to, event.template)]
    if event.kind == "media" and event.media is not None and event.media_type:
        return [media_body(to, event.media_type, event.media)]
    raise Unsendable("unsupported", f"{event.kind} without its content")


# ------------------------------------------------------------------ the guide's helpers


async def send_text(client: PlatformClient, account: Account, to: str, text: str) -> str:
    return await client.send_graph(account, text_body(to, text))


async def send_buttons(client: PlatformClient, account: Account, to: str, text: str,
                       buttons: Sequence[Button]) -> str:
    return await client.send_graph(account, buttons_body(to, text, buttons))


async def send_list(client: PlatformClient, account: Account, to: str, text: str, button: str,
                    sections: Sequence[ListSection]) -> str:
    return await client.send_graph(account, list_body(to, text, button, sections))


def template_appointment_confirmation(patient_name: str, date: str, time: str, branch: str,
                                      language: str = TEMPLATE_LANGUAGE) -> TemplateRef:
    return TemplateRef(name=Template.CITA_CONFIRMADA, language=language,
                       body_params=[patient_name, date, time, branch])


def template_appointment_reminder(patient_name: str, date: str, time: str, branch: str,
                                  language: str = TEMPLATE_LANGUAGE) -> TemplateRef:
    return TemplateRef(name=Template.RECORDATORIO_CITA, language=language,
                       body_params=[patient_name, date, time, branch])


def template_welcome(patient_name: str, language: str = TEMPLATE_LANGUAGE) -> TemplateRef:
    return TemplateRef(name=Template.BIENVENIDA, language=language, body_params=[patient_name])


def template_quote_sent(patient_name: str, services: str,
                        language: str = TEMPLATE_LANGUAGE) -> TemplateRef:
    return TemplateRef(name=Template.COTIZACION_ENVIADA, language=language,
                       body_params=[patient_name, services])


def template_follow_up(patient_name: str, language: str = TEMPLATE_LANGUAGE) -> TemplateRef:
    return TemplateRef(name=Template.SEGUIMIENTO, language=language, body_params=[patient_name])


async def send_appointment_confirmation(
    client: PlatformClient, account: Account, to: str, patient_name: str, date: str, time: str,
    branch: str, address: str | None = None,
) -> str:
    """The guide's sendAppointmentConfirmation. `cita_confirmada` has four variables; the
    branch address, when given, goes with the branch name into the fourth."""
    where = f"{branch}, {address}" if address else branch
    return await client.send_graph(
        account, template_body(to, template_appointment_confirmation(patient_name, date, time,
                                                                     where)))


async def send_appointment_reminder(
    client: PlatformClient, account: Account, to: str, patient_name: str, date: str, time: str,
    branch: str,
) -> str:
    return await client.send_graph(
        account, template_body(to, template_appointment_reminder(patient_name, date, time, branch)))


async def send_welcome(client: PlatformClient, account: Account, to: str,
                       patient_name: str) -> str:
    return await client.send_graph(account, template_body(to, template_welcome(patient_name)))


async def send_quote_sent(client: PlatformClient, account: Account, to: str, patient_name: str,
                          services: str) -> str:
    return await client.send_graph(account, template_body(to, template_quote_sent(patient_name,
                                                                                  services)))


async def send_follow_up(client: PlatformClient, account: Account, to: str,
                         patient_name: str) -> str:
    return await client.send_graph(account, template_body(to, template_follow_up(patient_name)))


def services_menu(services: Sequence[tuple[str, str, str | None]],
                  title: str = "Servicios") -> list[ListSection]:
    """(id, name, description) of up to 10 services as one list section."""
    if len(services) > ROWS_MAX:
        raise Unsendable("unsupported", f"{len(services)} services: a list shows at most {ROWS_MAX}")
    return [ListSection(title=title, rows=[ListRow(id=i, title=n, description=d)
                                           for i, n, d in services])]


async def send_services_menu(
    client: PlatformClient, account: Account, to: str,
    services: Sequence[tuple[str, str, str | None]],
    text: str = "¿Qué servicio te interesa?", button: str = "Ver servicios",
) -> str:
    """The guide's sendServicesMenu: the clinic's services as an interactive list."""
    return await send_list(client, account, to, text, button, services_menu(services))
