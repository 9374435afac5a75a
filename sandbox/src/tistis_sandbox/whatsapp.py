"""Fake WhatsApp Cloud API: `POST /{version}/{phone_number_id}/messages`.

Validates the body the way Cloud API does (limits from Meta's reference for text, interactive
buttons and lists, templates and media by link) and answers
`{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}`.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from tistis_sandbox.callbacks import schedule_whatsapp_statuses
from tistis_sandbox.meta import (
    bearer_or_query_token,
    graph_error,
    scripted_graph_error,
    token_error,
)
from tistis_sandbox.recorder import Recorder, Step, apply_delay
from tistis_sandbox.wire import Answer, Call

TEXT_MAX = 4096
INTERACTIVE_BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_MAX = 60
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
LIST_SECTIONS_MAX = 10
LIST_ROWS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
SECTION_TITLE_MAX = 24
CAPTION_MAX = 1024
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
TYPES = ("text", "interactive", "template", "reaction", "location", *MEDIA_TYPES)
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LINK = re.compile(r"^https?://\S+$")
PHONE = re.compile(r"\+?[0-9]{6,20}")
# A business-scoped user id (usernames, 2026): a country code, a dot, up to 128 alphanumerics;
# a parent one has ".ENT." (docs.360dialog.com/docs/resources/phone-numbers/usernames-and-bsuid).
BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
# "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
# (github.com/netflie/whatsapp-cloud-api/issues/201), code 100.
BAD_PARAM_TEXT = re.compile(r"[\n\t]| {5,}")
PARAM_TYPES = ("text", "currency", "date_time", "image", "document", "video", "payload")


class Invalid(Exception):
    """A request Cloud API would refuse: `code` is Meta's error code, `details` its reason."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _require(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or obj.get(key) in (None, ""):
        raise Invalid(131008, f"The parameter {where}{key} is required.")
    return obj[key]


def _max_len(value: Any, limit: int, what: str, minimum: int = 1) -> str:
    if not isinstance(value, str) or not (minimum <= len(value) <= limit):
        raise Invalid(131009, f"{what} length invalid. Min length: {minimum}, Max length: {limit}")
    return value


def _validate_text(msg: dict[str, Any]) -> None:
    text = _require(msg, "text", "")
    body = _require(text, "body", "text.")
    _max_len(body, TEXT_MAX, "Text body")


def _validate_buttons(action: dict[str, Any]) -> None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise Invalid(131009, "Invalid buttons count. Min allowed buttons: 1, Max allowed: 3")
    ids: set[str] = set()
    for button in buttons:
        if not isinstance(button, dict) or button.get("type") != "reply":
            raise Invalid(131009, "Button type must be 'reply'.")
        reply = _require(button, "reply", "interactive.action.buttons[].")
        bid = _max_len(_require(reply, "id", "reply."), BUTTON_ID_MAX, "Button id")
        _max_len(_require(reply, "title", "reply."), BUTTON_TITLE_MAX, "Button title")
        if bid in ids:
            raise Invalid(131009, "Duplicate button id: button ids must be unique.")
        ids.add(bid)


def _validate_list(action: dict[str, Any]) -> None:
    _max_len(_require(action, "button", "interactive.action."), LIST_BUTTON_MAX, "Button text")
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        raise Invalid(131009, f"Invalid sections count. Min: 1, Max: {LIST_SECTIONS_MAX}")
    rows_total = 0
    ids: set[str] = set()
    for section in sections:
        rows = _require(section, "rows", "sections[].")
        if len(sections) > 1 or "title" in section:
            # Meta requires a section title as soon as there is more than one section.
            _max_len(_require(section, "title", "sections[]."), SECTION_TITLE_MAX,
                     "Section title")
        if not isinstance(rows, list) or not rows:
            raise Invalid(131009, "Each section needs at least one row.")
        for row in rows:
            rid = _max_len(_require(row, "id", "rows[]."), ROW_ID_MAX, "Row id")
            _max_len(_require(row, "title", "rows[]."), ROW_TITLE_MAX, "Row title")
            if "description" in row:
                _max_len(row["description"], ROW_DESCRIPTION_MAX, "Row description", 0)
            if rid in ids:
                raise Invalid(131009, "Row ids must be unique across sections.")
            ids.add(rid)
        rows_total += len(rows)
    if rows_total > LIST_ROWS_MAX:
        raise Invalid(131009, f"Total row count exceed max allowed count: {LIST_ROWS_MAX}")


def _validate_interactive(msg: dict[str, Any]) -> None:
    inter = _require(msg, "interactive", "")
    kind = _require(inter, "type", "interactive.")
    body = _require(inter, "body", "interactive.")
    _max_len(_require(body, "text", "interactive.body."), INTERACTIVE_BODY_MAX, "Body text")
    if "footer" in inter:
        _max_len(_require(inter["footer"], "text", "footer."), FOOTER_MAX, "Footer text")
    header = inter.get("header")
    if isinstance(header, dict) and header.get("type") == "text":
        _max_len(header.get("text"), HEADER_TEXT_MAX, "Header text")
    action = _require(inter, "action", "interactive.")
    if kind == "button":
        _validate_buttons(action)
    elif kind == "list":
        if header is not None and (not isinstance(header, dict) or header.get("type") != "text"):
            raise Invalid(131009, "List messages only support a text header.")
        _validate_list(action)
    elif kind == "cta_url":
        params = _require(action, "parameters", "action.")
        _max_len(_require(params, "display_text", "parameters."), BUTTON_TITLE_MAX,
                 "Display text")
        _require_link(_require(params, "url", "parameters."))
    else:
        raise Invalid(100, "Param interactive.type must be one of {BUTTON, LIST, CTA_URL}")


def _require_link(link: Any) -> None:
    if not isinstance(link, str) or not LINK.match(link):
        raise Invalid(131009, "Media link must be a valid http(s) URL.")


def _validate_media(msg: dict[str, Any], kind: str) -> None:
    media = _require(msg, kind, "")
    if "id" not in media:
        _require_link(_require(media, "link", f"{kind}."))
    if "caption" in media:
        if kind in ("audio", "sticker"):
            raise Invalid(131009, f"Caption is not supported for {kind}.")
        _max_len(media["caption"], CAPTION_MAX, "Caption")


def _validate_template(msg: dict[str, Any]) -> None:
    tpl = _require(msg, "template", "")
    name = _require(tpl, "name", "template.")
    if not TEMPLATE_NAME.match(str(name)):
        raise Invalid(132001, f"template name ({name}) does not exist in the translation")
    language = _require(tpl, "language", "template.")
    _require(language, "code", "template.language.")
    components = tpl.get("components", [])
    if not isinstance(components, list):
        raise Invalid(131009, "template.components must be an array.")
    for comp in components:
        ctype = _require(comp, "type", "components[].")
        if ctype not in ("header", "body", "button", "footer"):
            raise Invalid(131009, f"Unknown component type: {ctype}")
        if ctype == "button":
            _require(comp, "sub_type", "components[].")
            _require(comp, "index", "components[].")
        for param in comp.get("parameters", []):
            ptype = _require(param, "type", "parameters[].")
            if ptype not in PARAM_TYPES:
                raise Invalid(131009, f"Unknown parameter type: {ptype}")
            value = _require(param, ptype, "parameters[].")
            if ptype == "text":
                _max_len(value, TEXT_MAX if ctype == "body" else HEADER_TEXT_MAX,
                         "Parameter text")
                if BAD_PARAM_TEXT.search(str(value)):
                    raise Invalid(100, "Param text cannot have new-line/tab characters or more "
                                       "than 4 consecutive spaces")


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid(100, "Request body must be a JSON object.")
    if body.get("messaging_product") != "whatsapp":
        raise Invalid(100, "The parameter messaging_product is required and must be whatsapp.")
    if body.get("recipient_type", "individual") != "individual":
        raise Invalid(100, "Param recipient_type must be individual.")
    if "to" not in body and "recipient" not in body:
        _require(body, "to", "")  # 131008, as Cloud API answers a missing recipient
    if "to" in body and "recipient" in body:
        raise Invalid(100, "Only one of to (a phone number) or recipient (a business-scoped "
                           "user id) may be given.")
    if "to" in body and not PHONE.fullmatch(str(body["to"])):
        raise Invalid(100, "Invalid parameter: to must be a phone number or wa_id.")
    if "recipient" in body and not BSUID.fullmatch(str(body["recipient"])):
        raise Invalid(100, "Invalid parameter: recipient must be a business-scoped user id.")
    kind = body.get("type", "text")
    if kind not in TYPES:
        raise Invalid(100, f"Param type must be one of {{{', '.join(t.upper() for t in TYPES)}}}")
    if kind == "text":
        _validate_text(body)
    elif kind == "interactive":
        _validate_interactive(body)
    elif kind == "template":
        _validate_template(body)
    elif kind in MEDIA_TYPES:
        _validate_media(body, kind)
    elif kind == "reaction":
        _require(_require(body, "reaction", ""), "message_id", "reaction.")
    elif kind == "location":
        loc = _require(body, "location", "")
        _require(loc, "latitude", "location.")
        _require(loc, "longitude", "location.")


def summary(body: dict[str, Any]) -> str | None:
    """The words the patient would read, for `play` and for test assertions."""
    kind = body.get("type", "text")
    if kind == "text":
        return body["text"]["body"]
    if kind == "interactive":
        return body["interactive"]["body"]["text"]
    if kind == "template":
        params = [
            p.get("text", "")
            for c in body["template"].get("components", [])
            for p in c.get("parameters", [])
            if p.get("type") == "text"
        ]
        return f"[template {body['template']['name']}] " + " | ".join(params)
    if kind in MEDIA_TYPES:
        media = body[kind]
        return media.get("caption") or media.get("link") or media.get("id")
    return None


def new_wamid(wa_id: str) -> str:
    # Real wamids are base64 of an internal record; unique and opaque is all that matters.
    raw = f"{wa_id}:{secrets.token_hex(10).upper()}".encode()
    return "wamid." + base64.b64encode(raw).decode().rstrip("=")


async def handle(recorder: Recorder, call: Call, phone_number_id: str) -> Answer:
    body = call.body
    entry = recorder.record("whatsapp", call)
    step = recorder.next_step("whatsapp")
    await apply_delay(step)
    if isinstance(body, dict):
        entry.recipient = str(body.get("to") or body.get("recipient") or "").lstrip("+") or None
    answer = _answer(step, call, body)
    entry.status = answer.status
    if answer.status == 200:
        entry.answered_id = answer.body["messages"][0]["id"]
        entry.text = summary(body)
        callback = recorder.callbacks.get("whatsapp")
        if callback is not None:
            schedule_whatsapp_statuses(
                callback, recorder.deliveries, message_id=entry.answered_id,
                recipient=entry.recipient or "", phone_number_id=phone_number_id,
                async_error_code=step.async_error_code if step is not None else None)
    else:
        entry.error_code = answer.body["error"]["code"]
    return answer


def _answer(step: Step | None, call: Call, body: Any) -> Answer:
    if step is not None and step.is_error:
        return scripted_graph_error(step, whatsapp=True)
    bad_token = token_error(bearer_or_query_token(call), whatsapp=True)
    if bad_token is not None:
        return bad_token
    try:
        validate(body)
    except Invalid as exc:
        return graph_error(exc.code, details=exc.details, whatsapp=True)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        # A value of the wrong JSON type deep in the body: Graph calls that a bad parameter.
        return graph_error(100, details=f"Invalid parameter: {exc}", whatsapp=True)
    to = str(body.get("to") or body["recipient"])
    wa_id = to.lstrip("+")
    message: dict[str, str] = {"id": new_wamid(wa_id)}
    if body.get("type") == "template":
        message["message_status"] = "accepted"
    contact = {"input": to, "wa_id": wa_id} if "to" in body else {"input": to, "user_id": to}
    return Answer(200, {
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [message],
    })
