"""One adapter per platform: signature check and normalization into the common events.

Adapters are pure: bytes and dicts in, events out. They never touch the network, so every
payload kind is tested by posting it and reading the events from the broker.
"""
from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from starlette.datastructures import Headers
from tistis_common.events import Channel, Event
from tistis_common.ids import stable_id


class MalformedPayload(ValueError):
    """Valid JSON, but not the platform's shape."""


class StaleSignature(ValueError):
    """A correct signature over a timestamp outside the tolerance: a possible replay."""


@dataclass(frozen=True)
class Context:
    tenant_id: uuid.UUID
    our_app_ids: frozenset[str]  # Meta app ids / TikTok client keys that are us (echo filter)


@dataclass
class Normalized:
    account_ids: set[str] = field(default_factory=set)  # platform accounts the payload names
    events: list[Event] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # kinds acknowledged but not handled
    echoes: int = 0  # our own sends echoed back: acknowledged, counted, never published
    # WhatsApp message_template_status_update: (template id, new status), applied to the
    # tenant's `whatsapp_templates` by the intake (the ingress owns that table).
    template_statuses: list[tuple[str, str]] = field(default_factory=list)

    def ignore(self, kind: object) -> None:
        self.ignored.append(str(kind)[:40])


class ChannelAdapter(Protocol):
    channel: Channel

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        """True when `body` was signed with `secret`; may raise StaleSignature."""
        ...

    def normalize(self, payload: object, ctx: Context) -> Normalized: ...


def hmac_sha256_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify_meta_signature(headers: Headers, body: bytes, secret: str) -> bool:
    """`X-Hub-Signature-256: sha256=<hex>` over the raw body, compared in constant time."""
    header = headers.get("x-hub-signature-256", "")
    if not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header[7:].strip().lower().encode(),
                               hmac_sha256_hex(secret, body).encode())


def inbound_event_id(tenant_id: uuid.UUID, channel: Channel, platform_message_id: str) -> uuid.UUID:
    # The same platform message always becomes the same event: retries are duplicates downstream.
    return stable_id("inbound", tenant_id, channel, platform_message_id)


def status_event_id(tenant_id: uuid.UUID, channel: Channel, message_id: str, status: str,
                    at: datetime) -> uuid.UUID:
    return stable_id("status", tenant_id, channel, message_id, status, at.isoformat())


def from_seconds(value: object) -> datetime:
    """Unix seconds as Meta sends them (a string in WhatsApp, a number elsewhere)."""
    return datetime.fromtimestamp(int(str(value)), UTC)


def from_millis(value: object) -> datetime:
    return datetime.fromtimestamp(int(str(value)) / 1000, UTC)


def text_or_none(value: object) -> str | None:
    return None if value is None else str(value)
