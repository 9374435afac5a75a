"""WhatsApp Cloud API webhooks (`object: whatsapp_business_account`, `entry[].changes[].value`).

Items: each message, echo, status and preference of a change, routed by the value's
`metadata.phone_number_id`; `errors` at the value level are one more item (logged and counted:
they say a message could not be delivered to us). Messages: text, interactive (button, list,
`nfm_reply` flow completions), template quick-reply `button`, media, location, contacts,
reaction, order, system (number or user id changed), edit, revoke, unsupported and any message
carrying `errors` (stored with its error). Business-scoped user ids (usernames, 2026): the
patient is `from` (the wa_id, a phone number) when present, else `from_user_id`; the other one
travels as an alias so both name one lead.
A template's status (`field: message_template_status_update`, WABA level: no phone number,
the business account in `entry.id`) is one item of account `waba:<id>` (directory.py routes it
to the tenant whose connection names that account) and becomes a TemplateStatusChanged.
Shapes: Meta's webhook reference (developers.facebook.com/documentation/business-messaging/
whatsapp/webhooks/reference/messages) and pywa's recorded corpus (david-lev/pywa
tests/data/updates/*.json).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from tistis_common.events import (
    Channel,
    InboundMessage,
    MediaRef,
    MessageStatus,
    OptOutChanged,
    TemplateStatusChanged,
)
from tistis_common.ids import stable_id

from ..directory import BUSINESS_ACCOUNT
from .base import (
    Item,
    MalformedPayload,
    Normalized,
    Routing,
    as_dict,
    as_list,
    from_seconds,
    inbound_event_id,
    int_or_none,
    location_fields,
    require,
    status_event_id,
    text_or_none,
    verify_meta_signature,
)

MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
STATUSES = ("sent", "delivered", "read", "failed")
FIELDS = ("messages", "user_preferences", "smb_message_echoes")
TEMPLATE_STATUS = "message_template_status_update"


def describe_errors(errors: object) -> str | None:
    if not isinstance(errors, list) or not errors:
        return None
    first = errors[0] if isinstance(errors[0], dict) else {}
    detail = (first.get("error_data") or {}).get("details") if isinstance(
        first.get("error_data"), dict) else None
    return " - ".join(str(p) for p in (first.get("code"), first.get("title"), detail) if p)[:500]


class WhatsAppAdapter:
    channel = Channel.WHATSAPP

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        return verify_meta_signature(headers, body, secret)

    def items(self, payload: object) -> list[Item]:
        if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
            raise MalformedPayload("object is not whatsapp_business_account")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise MalformedPayload("entry is not a list")
        items: list[Item] = []
        for entry in entries:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                items.append(Item("", "entry", entry))
                continue
            for change in changes:
                if isinstance(change, dict) and change.get("field") == TEMPLATE_STATUS:
                    items.append(_template_item(entry, change))
                else:
                    items.extend(self._change_items(change))
        return items

    def _change_items(self, change: Any) -> list[Item]:
        if not isinstance(change, dict):
            return [Item("", "change", change)]
        field = change.get("field", "messages")
        if field not in FIELDS:
            return [Item("", "ignored", field)]
        value = change.get("value")
        metadata = value.get("metadata") if isinstance(value, dict) else None
        account = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        if not isinstance(account, str | int) or not isinstance(value, dict):
            return [Item("", "change", change)]
        account = str(account)
        scope = {"contacts": value.get("contacts")}
        items = [Item(account, kind, raw, scope) for key, kind in (
            ("messages", "message"), ("message_echoes", "echo"), ("statuses", "status"),
            ("user_preferences", "preference")) for raw in _list_or_item(value.get(key))]
        if value.get("errors"):
            items.append(Item(account, "errors", value["errors"]))
        return items

    def normalize(self, item: Item, routing: Routing, out: Normalized) -> None:
        if item.kind == "message":
            msg = as_dict(item.raw, "message")
            sender = msg.get("from") or msg.get("from_user_id")
            require(sender, "message without sender")
            self._message(msg, item, str(sender), routing, out, sender_type="lead")
        elif item.kind == "echo":
            msg = as_dict(item.raw, "echo")
            recipient = msg.get("to") or msg.get("to_user_id")
            require(recipient, "echo without recipient")
            self._message(msg, item, str(recipient), routing, out, sender_type="agent")
        elif item.kind == "status":
            self._status(as_dict(item.raw, "status"), item.account, routing, out)
        elif item.kind == "preference":
            self._preference(as_dict(item.raw, "preference"), item.account, routing, out)
        elif item.kind == "template_status":
            self._template_status(as_dict(item.raw, "template_status"), item, routing, out)
        elif item.kind == "errors":  # Meta could not deliver something to us: say so, loudly
            out.ignore(f"errors.{describe_errors(item.raw)}")
        else:
            raise MalformedPayload(f"unreadable {item.kind}")

    def _message(self, msg: dict, item: Item, user: str, routing: Routing, out: Normalized,
                 *, sender_type: str) -> None:
        kind = msg.get("type")
        if kind == "request_welcome":  # the chat was opened: no message yet
            out.ignore(kind)
            return
        fields = self._content(msg, kind)
        error = describe_errors(msg.get("errors"))
        if error:
            fields["error"] = error
        referral = msg.get("referral")
        if isinstance(referral, dict):
            fields["referral"] = {k: str(v) for k, v in referral.items()
                                  if isinstance(v, str | int) and not isinstance(v, bool)}
        names, aliases = _contacts(item.scope.get("contacts"))
        own = ("from", "from_user_id") if sender_type == "lead" else ("to", "to_user_id")
        other_ids = {str(i) for i in (*(msg.get(k) for k in own), *aliases.get(user, ())) if i}
        message_id = str(msg["id"])
        require(message_id, "message without id")
        out.events.append(InboundMessage(
            event_id=inbound_event_id(routing.tenant_id, self.channel, message_id),
            tenant_id=routing.tenant_id,
            channel=self.channel,
            platform_account_id=item.account,
            platform_user_id=user,
            platform_message_id=message_id,
            sent_at=from_seconds(msg["timestamp"]),
            display_name=names.get(user) if sender_type == "lead" else None,
            phone="+" + user if user.isascii() and user.isdigit() else None,
            reply_to=text_or_none((msg.get("context") or {}).get("id")),
            sender_type=sender_type,  # type: ignore[arg-type]
            user_aliases=sorted(other_ids - {user}),
            **fields,
        ))

    def _content(self, msg: dict, kind: object) -> dict[str, Any]:
        """The message's own fields, readable by staff and the AI (`text`)."""
        body: Any = msg.get(kind) if isinstance(kind, str) else None
        if kind == "contacts" and isinstance(body, list):  # shared contact cards
            return {"kind": kind, "text": _readable(kind, body), "details": {kind: body}}
        if not isinstance(body, dict):
            # `unsupported`, or a message Meta could only describe by its `errors`
            # (an `interactive` without its body): stored with the error, staff see it.
            return {"kind": "unsupported", "text": None}
        if kind == "text":
            return {"kind": "text", "text": str(body["body"])}
        if kind == "interactive":
            return self._interactive(body)
        if kind == "button":  # a quick-reply button of a template
            return {"kind": "button", "text": text_or_none(body.get("text")),
                    "choice_id": text_or_none(body.get("payload")),
                    "choice_title": text_or_none(body.get("text"))}
        if kind in MEDIA_KINDS:
            media = MediaRef(id=text_or_none(body.get("id")), url=text_or_none(body.get("url")),
                             mime_type=text_or_none(body.get("mime_type")),
                             caption=text_or_none(body.get("caption")),
                             filename=text_or_none(body.get("filename")))
            return {"kind": kind, "media": media, "text": media.caption}
        if kind == "location":
            return _location(body)
        if kind == "order":
            return {"kind": kind, "text": _readable(kind, body), "details": {kind: body}}
        if kind == "reaction":  # an empty emoji takes the reaction back
            return {"kind": "reaction", "text": text_or_none(body.get("emoji")) or "",
                    "target_id": text_or_none(body.get("message_id"))}
        if kind == "edit":
            edited = self._content(as_dict(body.get("message"), "edit.message"),
                                   body["message"].get("type"))
            return {"kind": "edit", "text": edited.get("text"), "media": edited.get("media"),
                    "target_id": str(body["original_message_id"])}
        if kind == "revoke":
            return {"kind": "unsend", "target_id": str(body["original_message_id"])}
        if kind == "system":
            return {"kind": "system", "text": text_or_none(body.get("body")),
                    "new_user_id": text_or_none(body.get("wa_id") or body.get("user_id"))}
        return {"kind": "unsupported", "text": None, "error": f"type {kind}"[:100]}

    def _interactive(self, body: dict) -> dict[str, Any]:
        reply_type = body.get("type")
        reply = as_dict(body.get(reply_type), f"interactive.{reply_type}")
        if reply_type == "nfm_reply":  # a WhatsApp Flow completed: its answers, as JSON text
            answers = reply.get("response_json")
            parsed = json.loads(answers) if isinstance(answers, str) else answers
            return {"kind": "flow", "text": text_or_none(reply.get("body")) or "Sent",
                    "details": {"flow": text_or_none(reply.get("name")), "response": parsed}}
        require(reply_type in ("button_reply", "list_reply"), f"interactive {reply_type}")
        return {"kind": "interactive", "text": str(reply["title"]),
                "choice_id": str(reply["id"]), "choice_title": str(reply["title"])}

    def _status(self, status: dict, account: str, routing: Routing, out: Normalized) -> None:
        value = status.get("status")
        if value not in STATUSES:  # "deleted", "warning", ...: not a delivery state
            out.ignore(f"status.{value}")
            return
        message_id = str(status["id"])
        at = from_seconds(status["timestamp"])
        error = (status.get("errors") or [{}])[0]
        out.events.append(MessageStatus(
            event_id=status_event_id(routing.tenant_id, self.channel, message_id, value, at),
            tenant_id=routing.tenant_id,
            channel=self.channel,
            platform_account_id=account,
            platform_message_id=message_id,
            platform_user_id=text_or_none(status.get("recipient_id") or status.get("recipient_user_id")),
            status=value,
            status_at=at,
            error_code=int_or_none(error.get("code")) if error.get("code") is not None else None,
            error_title=text_or_none(error.get("title")),
            platform_conversation_id=text_or_none((status.get("conversation") or {}).get("id")),
        ))

    def _preference(self, pref: dict, account: str, routing: Routing, out: Normalized) -> None:
        value = pref.get("value")
        if pref.get("category") != "marketing_messages" or value not in ("stop", "resume"):
            out.ignore(f"user_preferences.{pref.get('category')}.{value}")
            return
        user = str(pref.get("wa_id") or pref["user_id"])
        at = from_seconds(pref["timestamp"])
        out.events.append(OptOutChanged(
            event_id=stable_id("opt_out", routing.tenant_id, self.channel, user, value, at.isoformat()),
            tenant_id=routing.tenant_id,
            channel=self.channel,
            platform_account_id=account,
            platform_user_id=user,
            category="marketing_messages",
            opted_out=value == "stop",
            changed_at=at,
            detail=text_or_none(pref.get("detail")),
        ))


    def _template_status(self, value: dict, item: Item, routing: Routing, out: Normalized) -> None:
        template_id, status = value.get("message_template_id"), value.get("event")
        require(isinstance(template_id, str | int) and not isinstance(template_id, bool),
                "template status without message_template_id")
        require(isinstance(status, str) and status, "template status without event")
        business_account = item.account.removeprefix(BUSINESS_ACCOUNT)
        at = from_seconds(item.scope.get("time") or 0)
        reason = text_or_none(value.get("reason"))
        out.events.append(TemplateStatusChanged(
            event_id=stable_id("template_status", routing.tenant_id, business_account,
                               str(template_id), str(status), at.isoformat()),
            tenant_id=routing.tenant_id,
            business_account_id=business_account,
            template_id=str(template_id),
            name=text_or_none(value.get("message_template_name")),
            language=text_or_none(value.get("message_template_language")),
            status=str(status).upper(),
            reason=None if reason == "NONE" else reason,
            changed_at=at,
        ))


def _template_item(entry: dict, change: dict) -> Item:
    """A WABA-level change: its account is the business account (`entry.id`)."""
    waba = entry.get("id")
    if not isinstance(waba, str | int) or isinstance(waba, bool) or not str(waba):
        return Item("", "change", change)
    return Item(f"{BUSINESS_ACCOUNT}{waba}", "template_status", change.get("value"),
                {"time": entry.get("time")})


def _list_or_item(value: object) -> list[Any]:
    return value if isinstance(value, list) else ([] if value is None else [value])


def _contacts(contacts: object) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """Profile names by id, and each id's other ids (wa_id <-> user_id <-> parent_user_id)."""
    names: dict[str, str | None] = {}
    aliases: dict[str, list[str]] = {}
    for contact in contacts if isinstance(contacts, list) else []:
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        ids = [str(contact[k]) for k in ("wa_id", "user_id") if contact.get(k)]
        for i in ids:
            names[i] = text_or_none(name) or None
            aliases[i] = [j for j in ids if j != i]
    return names, aliases


def _location(body: dict) -> dict[str, Any]:
    return location_fields(body.get("latitude"), body.get("longitude"),
                           text_or_none(body.get("name")), text_or_none(body.get("address")))


def _readable(kind: str, body: Any) -> str:
    """What staff and the AI read for a shared contact card or a catalog order."""
    if kind == "contacts":
        cards = as_list(body, "contacts")
        return "; ".join(
            " ".join(filter(None, [str((c.get("name") or {}).get("formatted_name") or ""),
                                   *[str(p.get("phone")) for p in c.get("phones") or []
                                     if isinstance(p, dict)]]))
            for c in cards if isinstance(c, dict))[:1000] or "(contact)"
    products = [f"{p.get('quantity')} x {p.get('product_retailer_id')}"
                for p in body.get("product_items") or [] if isinstance(p, dict)]
    return ("Order: " + ", ".join(products))[:1000] + (f" - {body['text']}" if body.get("text") else "")
