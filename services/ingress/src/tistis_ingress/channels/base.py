"""One adapter per platform: signature check, the delivery split into items, and each item
normalized into the common events.

A delivery (one POST) holds items of possibly many accounts and tenants: Meta sends every Page,
Instagram account and WhatsApp number of one app to the app's one callback URL. `items()` splits
it and names each item's account, so the intake can route each to its tenant; `normalize()`
reads one item, and whatever it raises concerns that item alone (it is kept raw for an engineer,
the others go on).

Adapters are pure: bytes and dicts in, events out. They never touch the network, so every
payload kind is tested by posting it and reading the events from the broker.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.datastructures import Headers
from tistis_common.events import Channel, Event, Location
from tistis_common.ids import stable_id


class MalformedPayload(ValueError):
    """Valid JSON, but not the platform's shape."""


class StaleSignature(ValueError):
    """A correct signature over a timestamp outside the tolerance: a possible replay."""


@dataclass(frozen=True)
class Routing:
    """Where an item was routed: the tenant owning its account, and who "we" are there."""

    tenant_id: uuid.UUID
    our_app_ids: frozenset[str]  # Meta app ids / TikTok client keys that are us (echo filter)


@dataclass(frozen=True)
class Item:
    """One unit of a delivery that stands or falls alone."""

    account: str  # the platform account it is addressed to: how it is routed to a tenant
    kind: str  # the adapter's own label ("messaging", "message", "status", ...)
    raw: Any  # exactly as the platform sent it: kept for an engineer when it cannot be read
    scope: dict[str, Any] = field(default_factory=dict)  # what it needs from around it


@dataclass
class Normalized:
    events: list[Event] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # kinds acknowledged but not handled
    echoes: int = 0  # our own sends echoed back: acknowledged, counted, never published

    def ignore(self, kind: object) -> None:
        self.ignored.append(str(kind)[:40])


class ChannelAdapter(Protocol):
    channel: Channel

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        """True when `body` was signed with `secret`; may raise StaleSignature."""
        ...

    def items(self, payload: object) -> list[Item]:
        """The delivery split into items; MalformedPayload when it is not the platform's shape
        at all (then nothing of it can be read)."""
        ...

    def normalize(self, item: Item, routing: Routing, out: Normalized) -> None:
        """Events of one item into `out`; any exception concerns this item only."""
        ...


def require(condition: object, problem: str) -> None:
    if not condition:
        raise MalformedPayload(problem)


def as_list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    require(isinstance(value, list), f"{what} is not a list")
    return value  # type: ignore[return-value]


def as_dict(value: object, what: str) -> dict[str, Any]:
    require(isinstance(value, dict), f"{what} is not an object")
    return value  # type: ignore[return-value]


# ------------------------------------------------------------ storable JSON
# Whatever a platform signs must become a value PostgreSQL and JSON can hold: a lone surrogate
# (`\ud800`) cannot be encoded (a 503 for the whole batch, retried by Meta for hours), a NUL is
# refused by PostgreSQL text (accepted, then dead-lettered), `1e999` is infinity (serialized as
# null). Strings are repaired (U+FFFD, NUL removed); a non-finite or absurdly long number
# becomes null, which the field that needed it refuses alone.

_NEEDS_REPAIR = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
MAX_INT_DIGITS = 19  # beyond int64: no platform field is that long, PostgreSQL cannot hold it


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _bounded_int(text: str) -> int | None:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else None


def _repair(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)
    if isinstance(value, list):
        return [_repair(v) for v in value]
    if isinstance(value, dict):
        return {_repair(k): _repair(v) for k, v in value.items()}
    return value


def load_json(data: bytes | str) -> Any:
    """`json.loads`, every value storable. Raises ValueError (or RecursionError) when not JSON."""
    raw = data.encode() if isinstance(data, str) else data
    loaded = json.loads(data, parse_float=_finite, parse_int=_bounded_int,
                        parse_constant=lambda _: None)
    # Only escapes produce NULs and surrogates (raw control bytes are not JSON, and UTF-8 cannot
    # encode a surrogate), so a body without them is taken as it is, at no cost.
    return _repair(loaded) if _NEEDS_REPAIR.search(raw) else loaded


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
    return datetime.fromtimestamp(_digits(value), UTC)


def from_millis(value: object) -> datetime:
    return datetime.fromtimestamp(_digits(value) / 1000, UTC)


def _digits(value: object) -> int:
    text = str(value)
    require(isinstance(value, int | str) and not isinstance(value, bool)
            and 0 < len(text) <= MAX_INT_DIGITS and text.isascii() and text.isdigit(),
            "timestamp is not a number of seconds")
    return int(text)


def text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def int_or_none(value: object) -> int | None:
    """An error code as an int PostgreSQL's `int` holds, or None."""
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if -2**31 <= number < 2**31 else None


def location_fields(lat: object, lon: object, name: str | None = None,
                    address: str | None = None) -> dict[str, Any]:
    """A location's fields; coordinates that are not finite numbers in range are refused alone
    (the message is kept, with its name or address, and says so)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               and abs(v) <= 180 for v in (lat, lon)):
        return {"kind": "location", "text": name or address, "error": "unreadable coordinates"}
    return {"kind": "location", "location": Location(
        latitude=float(lat), longitude=float(lon), name=name, address=address)}  # type: ignore[arg-type]
