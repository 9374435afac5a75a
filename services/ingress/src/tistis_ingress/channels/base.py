from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from starlette.datastructures import Headers
from tistis_common.events import Channel, Event


class MalformedPayload(ValueError):
    """Valid JSON, but not the platform's shape."""


@dataclass
class Normalized:
    account_ids: set[str] = field(default_factory=set)  # platform accounts the payload names
    events: list[Event] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # kinds acknowledged but not handled


class ChannelAdapter(Protocol):
    channel: Channel

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool: ...

    def normalize(self, payload: object, tenant_id: uuid.UUID) -> Normalized: ...


def hmac_sha256_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify_meta_signature(headers: Headers, body: bytes, secret: str) -> bool:
    """`X-Hub-Signature-256: sha256=<hex>` over the raw body, compared in constant time."""
    header = headers.get("x-hub-signature-256", "")
    if not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header[7:].strip().lower(), hmac_sha256_hex(secret, body))
