"""Webhook payloads exactly as the platforms POST them to us, and their signatures.

Builders return plain dicts; `sign_meta` / `sign_tiktok` turn one into `(body_bytes, headers)`
signed the platform's way, ready to POST to the ingress:

    body, headers = sign_meta(whatsapp_payload([wa_text("5215512345678", "Hola")]), secret)

Meta serializes with non-ASCII characters and "/" escaped ("\\u00e1", "\\/"), so the ingress
must verify the raw bytes, never a re-serialization; the fake does the same to catch that bug.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any, NamedTuple

# Defaults match the demo tenant in fixtures/, so `play` works against `make run` as is.
DEFAULT_SECRET = "sandbox-app-secret"
DEFAULT_PHONE_NUMBER_ID = "100000000000001"
DEFAULT_DISPLAY_PHONE = "526310000000"
DEFAULT_WABA_ID = "200000000000001"
DEFAULT_PAGE_ID = "100000000000101"
DEFAULT_IG_ID = "17841400000000001"
DEFAULT_TIKTOK_BUSINESS_ID = "tt-business-esva"
DEFAULT_TIKTOK_CLIENT_KEY = "sandbox-tiktok-client-key"


class SignedWebhook(NamedTuple):
    body: bytes
    headers: dict[str, str]


def _now() -> int:
    return int(time.time())


def wamid() -> str:
    return "wamid.HBgN" + secrets.token_hex(16).upper()


def psid() -> str:
    return str(secrets.randbelow(9 * 10**15) + 10**15)


# --- WhatsApp -----------------------------------------------------------------------------


def _wa_message(wa_id: str, kind: str, content: dict[str, Any], *, message_id: str | None,
                timestamp: int | None, context_id: str | None = None,
                business_phone: str = DEFAULT_DISPLAY_PHONE) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "from": wa_id,
        "id": message_id or wamid(),
        "timestamp": str(timestamp or _now()),
        "type": kind,
        kind: content,
    }
    if context_id:
        # Replies to our interactive messages carry the id of the message they answer.
        msg["context"] = {"from": business_phone, "id": context_id}
    return msg


def wa_text(wa_id: str, body: str, *, message_id: str | None = None,
            timestamp: int | None = None) -> dict[str, Any]:
    return _wa_message(wa_id, "text", {"body": body}, message_id=message_id, timestamp=timestamp)




def wa_list_reply(wa_id: str, row_id: str, title: str, description: str | None = None, *,
                  context_id: str | None = None, message_id: str | None = None,
                  timestamp: int | None = None) -> dict[str, Any]:
    reply = {"id": row_id, "title": title}
    if description is not None:
        reply["description"] = description
    content = {"type": "list_reply", "list_reply": reply}
    return _wa_message(wa_id, "interactive", content, message_id=message_id,
                       timestamp=timestamp, context_id=context_id or wamid())


def wa_template_button(wa_id: str, payload: str, text: str, *, context_id: str | None = None,
                       message_id: str | None = None, timestamp: int | None = None) -> dict:
    """A tap on a quick-reply button of a template (type "button", not "interactive")."""
    return _wa_message(wa_id, "button", {"payload": payload, "text": text},
                       message_id=message_id, timestamp=timestamp,
                       context_id=context_id or wamid())




def wa_media(wa_id: str, kind: str, media_id: str, mime_type: str, *,
             caption: str | None = None, filename: str | None = None, sha256: str | None = None,
             message_id: str | None = None, timestamp: int | None = None) -> dict[str, Any]:
    """An image, audio (a voice note: `voice` true), video, document or sticker message: the
    webhook carries the media id, its type and sha256, never the bytes (fetched by id)."""
    media: dict[str, Any] = {"mime_type": mime_type, "sha256": sha256 or secrets.token_hex(32),
                             "id": media_id}
    if kind == "audio":
        media["voice"] = True
    if caption is not None and kind in ("image", "video", "document"):
        media["caption"] = caption
    if filename is not None and kind == "document":
        media["filename"] = filename
    return _wa_message(wa_id, kind, media, message_id=message_id, timestamp=timestamp)


def meta_attachment(kind: str, url: str) -> dict[str, Any]:
    """A Messenger / Instagram webhook attachment (`image`, `audio`, `video`, `file`): a CDN URL."""
    return {"type": kind, "payload": {"url": url}}




def _wa_envelope(value: dict[str, Any], *, phone_number_id: str, display_phone_number: str,
                 waba_id: str) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }


def whatsapp_payload(messages: list[dict[str, Any]], *, name: str | None = "María García",
                     phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
                     display_phone_number: str = DEFAULT_DISPLAY_PHONE,
                     waba_id: str = DEFAULT_WABA_ID) -> dict[str, Any]:
    """One webhook carrying `messages` (all from the sender of the first one)."""
    wa_ids = list(dict.fromkeys(m["from"] for m in messages))
    contacts = [{"profile": {"name": name or ""}, "wa_id": w} for w in wa_ids]
    return _wa_envelope({"contacts": contacts, "messages": messages},
                        phone_number_id=phone_number_id,
                        display_phone_number=display_phone_number, waba_id=waba_id)


def whatsapp_status(message_id: str, status: str, recipient_id: str, *,
                    error_code: int | None = None, error_title: str | None = None,
                    timestamp: int | None = None,
                    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
                    display_phone_number: str = DEFAULT_DISPLAY_PHONE,
                    waba_id: str = DEFAULT_WABA_ID) -> dict[str, Any]:
    """A delivery receipt: sent, delivered, read, or failed with an error code."""
    entry: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp or _now()),
        "recipient_id": recipient_id,
    }
    if status in ("sent", "delivered"):
        entry["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
        entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if status == "failed":
        code = error_code or 131026
        title = error_title or "Message undeliverable"
        entry["errors"] = [{
            "code": code,
            "title": title,
            "message": title,
            "error_data": {"details": title},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }]
    return _wa_envelope({"statuses": [entry]}, phone_number_id=phone_number_id,
                        display_phone_number=display_phone_number, waba_id=waba_id)


# --- Messenger and Instagram --------------------------------------------------------------


def _messaging_payload(obj: str, account_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": account_id, "time": event["timestamp"],
                                      "messaging": [event]}]}


def _messaging_event(sender_id: str, account_id: str, *, text: str | None,
                     quick_reply_payload: str | None, attachments: list[dict] | None,
                     postback: dict[str, str] | None, mid: str | None,
                     timestamp: int | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "sender": {"id": sender_id},
        "recipient": {"id": account_id},
        "timestamp": timestamp or int(time.time() * 1000),
    }
    mid = mid or "m_" + secrets.token_urlsafe(30)
    if postback is not None:
        event["postback"] = {"mid": mid, **postback}
        return event
    message: dict[str, Any] = {"mid": mid}
    if text is not None:
        message["text"] = text
    if quick_reply_payload is not None:
        message["quick_reply"] = {"payload": quick_reply_payload}
    if attachments:
        message["attachments"] = attachments
    event["message"] = message
    return event


def messenger_payload(text: str | None, *, sender_id: str, page_id: str = DEFAULT_PAGE_ID,
                      quick_reply_payload: str | None = None,
                      attachments: list[dict] | None = None,
                      postback: dict[str, str] | None = None, mid: str | None = None,
                      timestamp: int | None = None) -> dict[str, Any]:
    """Messenger (`object: page`); `postback={"title": ..., "payload": ...}` for a button tap."""
    event = _messaging_event(sender_id, page_id, text=text,
                             quick_reply_payload=quick_reply_payload, attachments=attachments,
                             postback=postback, mid=mid, timestamp=timestamp)
    return _messaging_payload("page", page_id, event)


def instagram_payload(text: str | None, *, sender_id: str, ig_id: str = DEFAULT_IG_ID,
                      quick_reply_payload: str | None = None,
                      attachments: list[dict] | None = None,
                      postback: dict[str, str] | None = None, mid: str | None = None,
                      timestamp: int | None = None) -> dict[str, Any]:
    """Instagram messaging (`object: instagram`), the same `messaging[]` shape as Messenger."""
    event = _messaging_event(sender_id, ig_id, text=text,
                             quick_reply_payload=quick_reply_payload, attachments=attachments,
                             postback=postback, mid=mid, timestamp=timestamp)
    return _messaging_payload("instagram", ig_id, event)


# --- TikTok -------------------------------------------------------------------------------


def tiktok_conversation_id(user_id: str) -> str:
    # Stable per user so that `play` can find the reply sent to this conversation.
    return "sbxconv-" + hashlib.sha256(user_id.encode()).hexdigest()[:20]


def tiktok_payload(text: str, *, user_id: str, username: str = "paciente",
                   business_id: str = DEFAULT_TIKTOK_BUSINESS_ID,
                   business_username: str = "esva.dental",
                   client_key: str = DEFAULT_TIKTOK_CLIENT_KEY,
                   conversation_id: str | None = None, message_id: str | None = None,
                   create_time: int | None = None) -> dict[str, Any]:
    """TikTok Business Messaging `im_receive_msg`: the message itself is a JSON *string*."""
    now = create_time or _now()
    content = {
        "timestamp": now * 1000,
        "unique_identifier": user_id,
        "from_user": {"id": user_id, "role": "personal_account"},
        "to_user": {"id": business_id, "role": "business_account"},
        "from": username,
        "to": business_username,
        "conversation_id": conversation_id or tiktok_conversation_id(user_id),
        "message_id": message_id or secrets.token_urlsafe(18),
        "type": "text",
        "text": {"body": text},
    }
    return {
        "client_key": client_key,
        "event": "im_receive_msg",
        "create_time": now,
        "user_openid": business_id,
        "content": json.dumps(content, ensure_ascii=False, separators=(",", ":")),
    }


# --- Signing ------------------------------------------------------------------------------


def meta_bytes(payload: dict[str, Any]) -> bytes:
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode()


def sign_meta(payload: dict[str, Any] | bytes, app_secret: str = DEFAULT_SECRET) -> SignedWebhook:
    body = payload if isinstance(payload, bytes) else meta_bytes(payload)
    sha256 = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    sha1 = hmac.new(app_secret.encode(), body, hashlib.sha1).hexdigest()
    return SignedWebhook(body, {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature": f"sha1={sha1}",
        "X-Hub-Signature-256": f"sha256={sha256}",
    })


def sign_tiktok(payload: dict[str, Any] | bytes, client_secret: str = DEFAULT_SECRET,
                timestamp: int | None = None) -> SignedWebhook:
    body = payload if isinstance(payload, bytes) else json.dumps(
        payload, ensure_ascii=False, separators=(",", ":")).encode()
    t = timestamp or _now()
    signed = f"{t}.".encode() + body
    s = hmac.new(client_secret.encode(), signed, hashlib.sha256).hexdigest()
    return SignedWebhook(body, {"Content-Type": "application/json",
                                "Tiktok-Signature": f"t={t},s={s}"})


def verify_meta(body: bytes, header: str | None, app_secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):])


def verify_tiktok(body: bytes, header: str | None, client_secret: str, *,
                  tolerance: int = 300, now: int | None = None) -> bool:
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or _now()) - t) > tolerance:
        return False
    expected = hmac.new(client_secret.encode(), f"{t}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("s", ""))
