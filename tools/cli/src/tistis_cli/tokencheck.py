"""Does a connection's access token still work? One cheap authenticated GET per platform.

Meta (WhatsApp, Messenger, Instagram): `GET /{version}/{account id}?fields=id` with the token;
error code 190 (or 102, or HTTP 401) means the token is invalid, expired or revoked.
TikTok Business: `GET /open_api/{version}/business/get/?business_id=...` with the
`Access-Token` header; `code` 0 is fine, 401xx codes (40105: token incorrect or revoked) or
HTTP 401 are a bad token. Anything else (unreachable, 5xx, 404) is "unknown", not "bad".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import httpx
from tistis_common.settings import Settings

META_BAD_CODES = {190, 102}


@dataclass(frozen=True)
class TokenCheck:
    status: Literal["ok", "bad", "unknown"]
    detail: str


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


async def check_token(http: httpx.AsyncClient, settings: Settings, channel: str,
                      account_id: str, token: str | None) -> TokenCheck:
    if not token:
        return TokenCheck("bad", "no access token stored")
    try:
        if channel == "tiktok":
            return await _tiktok(http, settings, account_id, token)
        return await _meta(http, settings, account_id, token)
    except httpx.HTTPError as exc:
        return TokenCheck("unknown", f"unreachable: {type(exc).__name__}")


async def _meta(http: httpx.AsyncClient, settings: Settings, account_id: str, token: str) -> TokenCheck:
    url = f"{settings.graph_api_base_url.rstrip('/')}/{settings.graph_api_version}/{account_id}"
    response = await http.get(url, params={"fields": "id"}, headers={"Authorization": f"Bearer {token}"})
    error = _json(response).get("error") or {}
    code = error.get("code") if isinstance(error, dict) else None
    if response.status_code == 401 or code in META_BAD_CODES:
        return TokenCheck("bad", f"token refused (HTTP {response.status_code}, code {code})")
    if response.status_code == 200:
        return TokenCheck("ok", "token accepted")
    return TokenCheck("unknown", f"HTTP {response.status_code}")


async def _tiktok(http: httpx.AsyncClient, settings: Settings, account_id: str, token: str) -> TokenCheck:
    url = (f"{settings.tiktok_api_base_url.rstrip('/')}/open_api/{settings.tiktok_api_version}"
           "/business/get/")
    response = await http.get(url, params={"business_id": account_id, "fields": '["username"]'},
                              headers={"Access-Token": token})
    code = _json(response).get("code")
    if response.status_code == 401 or (isinstance(code, int) and 40100 <= code < 40200):
        return TokenCheck("bad", f"token refused (HTTP {response.status_code}, code {code})")
    if response.status_code == 200 and code == 0:
        return TokenCheck("ok", "token accepted")
    return TokenCheck("unknown", f"HTTP {response.status_code}, code {code}")
