"""The platforms' HTTP APIs: one httpx client per service, and every answer classified.

Meta recommends classifying on the error `code` (titles change), so we do:
- token invalid or expired (190, HTTP 401): the connection is unhealthy, the message is parked;
- rate limits (HTTP 429, 4, 17, 32, 613, 80007, 130429; 131056 for one recipient only): retry
  honouring Retry-After, with backoff;
- the 24 h window (WhatsApp 131047, Messenger 10 / subcode 2018278, Instagram 10 / subcode
  2534022 "outside of allowed window"): not retried;
- the user stopped marketing messages (131050): not retried, the lead is opted out;
- temporary (HTTP 5xx, 1, 2, 1200, 131000, 131016, timeouts): retried by the queue;
- everything else (131026 undeliverable, 132000/132001 template errors, 131009 bad
  parameter, ...): permanent, not retried.
TikTok answers HTTP 200 with a non-zero `code` for its errors; success is `code` 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport
from tistis_common import metrics
from tistis_common.settings import Settings

GRAPH_RATE_LIMITS = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
GRAPH_TRANSIENT = frozenset({1, 2, 1200, 131000, 131016})
GRAPH_TOKEN = frozenset({190, 102})
WA_WINDOW = 131047
MESSENGER_WINDOW_SUBCODE = 2018278
INSTAGRAM_WINDOW_SUBCODE = 2534022
WINDOW_SUBCODES = frozenset({MESSENGER_WINDOW_SUBCODE, INSTAGRAM_WINDOW_SUBCODE})
WA_OPTED_OUT = 131050
WA_PAIR_RATE_LIMIT = 131056

TIKTOK_OK = 0
TIKTOK_RATE_LIMITS = frozenset({40100, 40064})
TIKTOK_TOKEN = frozenset({40102, 40104, 40105})
TIKTOK_TRANSIENT = frozenset({50000, 50002})


class SendError(Exception):
    def __init__(self, title: str, code: int | None = None, status: int | None = None):
        super().__init__(f"{code}: {title}" if code is not None else title)
        self.title = title[:500]
        self.code = code
        self.status = status


class Transient(SendError):
    """Retrying later may work (5xx, timeouts)."""


class RateLimited(SendError):
    def __init__(self, title: str, code: int | None = None, status: int | None = None, *,
                 retry_after: float | None = None, recipient_only: bool = False):
        super().__init__(title, code, status)
        self.retry_after = retry_after
        self.recipient_only = recipient_only


class TokenInvalid(SendError):
    """The connection's token is invalid or expired: fix it, then replay."""


class RefreshRefused(TokenInvalid):
    """The platform refused to refresh the token: the clinic has to connect the channel again."""


class WindowClosed(SendError):
    """The platform says the messaging window is closed."""


class OptedOut(SendError):
    """The user stopped these messages (WhatsApp 131050)."""


class Rejected(SendError):
    """Permanent: retrying the same request cannot work."""


@dataclass(frozen=True)
class Account:
    """What a send needs from `channel_connections`."""

    connection_id: Any
    channel: str
    platform_account_id: str
    access_token: str | None = field(repr=False)  # never in a log line or an error
    settings: dict[str, Any] = field(default_factory=dict)
    token_expires_at: datetime | None = None  # tokens that expire (TikTok, Instagram Login)
    refresh_failed: bool = False  # the last refresh was refused (tistis_dispatcher.tokens)


@dataclass(frozen=True)
class NewTokens:
    """A refresh's answer; `refresh_token` None when the platform renews the token itself."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def classify_graph(response: httpx.Response) -> SendError:
    err = _json(response).get("error") or {}
    code = err.get("code") if isinstance(err.get("code"), int) else None
    subcode = err.get("error_subcode")
    details = (err.get("error_data") or {}).get("details") if isinstance(err, dict) else None
    title = str(details or err.get("message") or f"HTTP {response.status_code}")
    status = response.status_code
    if code in GRAPH_TOKEN or status == 401:
        return TokenInvalid(title, code or 190, status)
    if code in GRAPH_RATE_LIMITS or status == 429:
        return RateLimited(title, code, status,
                           retry_after=retry_after_seconds(response.headers.get("retry-after")),
                           recipient_only=code == WA_PAIR_RATE_LIMIT)
    if code == WA_WINDOW or subcode in WINDOW_SUBCODES:
        return WindowClosed(title, code, status)
    if code == WA_OPTED_OUT:
        return OptedOut(title, code, status)
    if status >= 500 or code in GRAPH_TRANSIENT:
        return Transient(title, code, status)
    return Rejected(title, code, status)


def classify_tiktok(response: httpx.Response) -> SendError | None:
    """None on success (`code` 0 with HTTP 2xx)."""
    data = _json(response)
    code = data.get("code")
    title = str(data.get("message") or f"HTTP {response.status_code}")
    if response.status_code >= 500:
        return Transient(title, code, response.status_code)
    if response.status_code == 429 or code in TIKTOK_RATE_LIMITS:
        return RateLimited(title, code, response.status_code,
                           retry_after=retry_after_seconds(response.headers.get("retry-after")))
    if response.status_code >= 400 and code is None:
        return Rejected(title, None, response.status_code)
    if code == TIKTOK_OK:
        return None
    if code in TIKTOK_TOKEN:
        return TokenInvalid(title, code, response.status_code)
    if code in TIKTOK_TRANSIENT:
        return Transient(title, code, response.status_code)
    return Rejected(title, code if isinstance(code, int) else None, response.status_code)


class PlatformClient:
    """POSTs one message body and returns the platform's message id, or raises a SendError."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings):
        self.http = http
        self.settings = settings

    @staticmethod
    def new_http(settings: Settings) -> httpx.AsyncClient:
        t = settings.dispatcher_http_timeout_seconds
        # httpx's API on aiohttp's engine (httpx-aiohttp): a fifth of the CPU per send of
        # httpx's own transport. Every connection kept alive: with fewer keep-alive slots than
        # sends in flight, each burst closed and reopened connections.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        return httpx.AsyncClient(timeout=httpx.Timeout(t, connect=min(t, 5.0)), limits=limits,
                                 transport=AiohttpTransport(limits=limits))

    async def _post(self, channel: str, url: str, body: dict[str, Any],
                    headers: dict[str, str]) -> httpx.Response:
        started = time.perf_counter()
        try:
            return await self.http.post(url, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise Transient(f"timeout: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise Transient(f"transport: {type(exc).__name__}") from exc
        finally:
            metrics.SEND_SECONDS.labels(channel).observe(time.perf_counter() - started)

    async def post_graph(self, account: Account, body: dict[str, Any]) -> httpx.Response:
        """WhatsApp Cloud API and the Messenger / Instagram Send API: POST /{v}/{id}/messages;
        a refusal raises its SendError. Also what read receipts and sender actions use."""
        if not account.access_token:
            raise TokenInvalid("the connection has no access token", 190)
        # One GRAPH_API_VERSION for every channel and connection, one place to move it forward.
        url = (f"{self.settings.graph_api_base_url.rstrip('/')}/{self.settings.graph_api_version}/"
               f"{account.platform_account_id}/messages")
        response = await self._post(account.channel, url, body,
                                    {"Authorization": f"Bearer {account.access_token}"})
        if response.status_code >= 300:
            raise classify_graph(response)
        return response

    async def send_graph(self, account: Account, body: dict[str, Any]) -> str:
        response = await self.post_graph(account, body)
        data = _json(response)
        message_id = (data.get("messages") or [{}])[0].get("id") or data.get("message_id")
        if not message_id:
            raise Transient("answer without a message id", None, response.status_code)
        return str(message_id)

    async def send_tiktok(self, account: Account, body: dict[str, Any]) -> str:
        """POST /open_api/{v}/business/message/send/ with the bare token in `Access-Token`."""
        if not account.access_token:
            raise TokenInvalid("the connection has no access token", 40104)
        version = account.settings.get("api_version") or self.settings.tiktok_api_version
        url = (f"{self.settings.tiktok_api_base_url.rstrip('/')}/open_api/{version}"
               "/business/message/send/")
        response = await self._post("tiktok", url, body, {"Access-Token": account.access_token})
        error = classify_tiktok(response)
        if error is not None:
            raise error
        message_id = ((_json(response).get("data") or {}).get("message") or {}).get("message_id")
        if not message_id:
            raise Transient("answer without a message id", None, response.status_code)
        return str(message_id)

    async def send(self, account: Account, body: dict[str, Any]) -> str:
        if account.channel == "tiktok":
            return await self.send_tiktok(account, body)
        return await self.send_graph(account, body)

    # ------------------------------------------------------------------ token refresh
    # Wire formats and sources: tistis_dispatcher.tokens.

    async def _refresh_call(self, channel: str, method: str, url: str,
                            **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Transient(f"token refresh transport: {type(exc).__name__}") from exc

    async def refresh_tiktok(self, client_id: str | None, client_secret: str | None,
                             refresh_token: str | None) -> NewTokens:
        """POST /open_api/{v}/tt_user/oauth2/refresh_token/ (TikTok Accounts API)."""
        if not (client_id and client_secret and refresh_token):
            raise RefreshRefused("no refresh token or client credentials stored for TikTok")
        url = (f"{self.settings.tiktok_api_base_url.rstrip('/')}/open_api/"
               f"{self.settings.tiktok_api_version}/tt_user/oauth2/refresh_token/")
        response = await self._refresh_call("tiktok", "POST", url, json={
            "client_id": client_id, "client_secret": client_secret,
            "grant_type": "refresh_token", "refresh_token": refresh_token})
        data = _json(response)
        if response.status_code >= 500:
            raise Transient(str(data.get("message") or f"HTTP {response.status_code}"), None,
                            response.status_code)
        tokens = data.get("data") or {}
        if data.get("code") != TIKTOK_OK or not tokens.get("access_token"):
            code = data.get("code")
            raise RefreshRefused(str(data.get("message") or f"HTTP {response.status_code}"),
                                 code if isinstance(code, int) else None, response.status_code)
        return NewTokens(str(tokens["access_token"]), tokens.get("refresh_token") or refresh_token,
                         _expiry(tokens.get("expires_in")))

    async def refresh_instagram(self, access_token: str | None) -> NewTokens:
        """GET graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token."""
        if not access_token:
            raise RefreshRefused("no Instagram access token stored", 190)
        url = f"{self.settings.instagram_api_base_url.rstrip('/')}/refresh_access_token"
        response = await self._refresh_call("instagram", "GET", url, params={
            "grant_type": "ig_refresh_token", "access_token": access_token})
        data = _json(response)
        if response.status_code >= 300 or not data.get("access_token"):
            error = classify_graph(response)
            if isinstance(error, Transient | RateLimited):
                raise Transient(error.title, error.code, error.status)
            raise RefreshRefused(error.title, error.code, error.status)
        return NewTokens(str(data["access_token"]), None, _expiry(data.get("expires_in")))


def _expiry(expires_in: Any) -> datetime:
    """`expires_in` is seconds from now on both platforms."""
    seconds = float(expires_in) if isinstance(expires_in, int | float | str) else 0.0
    return datetime.now(UTC) + timedelta(seconds=seconds)
