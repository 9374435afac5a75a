"""One platform exchange without Starlette objects: a `Call` in, an `Answer` out.

The fakes' hot paths (every model call and every platform send of a benchmark) read a few
headers and a JSON body and write a JSON answer; a Starlette `Request` and `JSONResponse` per
call cost more CPU than that work. These two carry just what the fakes use, and produce the
same bytes and headers as `JSONResponse` would.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from starlette.datastructures import URL
from starlette.types import Scope

# JSONResponse.render's settings, as one encoder instead of a json.dumps(**kwargs) per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


class Call(NamedTuple):
    method: str
    path: str
    query: dict[str, str]  # the last value of a repeated parameter, as Starlette's .get
    headers: dict[str, str]  # names in lower case, as ASGI servers deliver them
    raw: bytes  # the body
    body: Any  # the same, parsed

    @classmethod
    def from_scope(cls, scope: Scope, raw: bytes, body: Any) -> Call:
        path: str = scope["path"]
        if "?" in path or "#" in path or "\\" in path:
            path = URL(scope=scope).path  # escaped, as `request.url.path` always recorded it
        qs: bytes = scope.get("query_string", b"")
        query = dict(parse_qsl(qs.decode("latin-1"), keep_blank_values=True)) if qs else {}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        return cls(scope["method"], path, query, headers, raw, body)


class Answer(NamedTuple):
    status: int
    body: Any  # JSON-able
    headers: dict[str, str] | None = None

    def encode(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """Body and raw headers exactly as `JSONResponse(body, status, headers)` sends them."""
        content = dumps(self.body)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in (self.headers or {}).items()]
        names = {k for k, _ in raw}
        if b"content-length" not in names and not (self.status < 200
                                                   or self.status in (204, 304)):
            raw.append((b"content-length", str(len(content)).encode()))
        if b"content-type" not in names:
            raw.append((b"content-type", b"application/json"))
        return content, raw


def expired_token(token: str) -> bool:
    """A token named `expires-<unix seconds>-...` stops working at that time (the fakes issue
    such tokens on a refresh, and tests write them to mean "valid until")."""
    parts = token.split("-")
    return (len(parts) >= 2 and parts[0] == "expires" and parts[1].isdigit()
            and int(parts[1]) <= time.time())


def expiring_token(lifetime_s: float, tag: str) -> str:
    return f"expires-{int(time.time() + lifetime_s)}-{tag}"


def token_fingerprint(token: str | None) -> str | None:
    """Which token a request carried, without keeping the token: tests compare it with the
    fingerprint of the one they expect."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None
