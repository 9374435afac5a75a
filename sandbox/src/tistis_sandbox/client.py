"""Helpers for tests: drive the sandbox's `/_sandbox/` controls over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


def _steps_payload(steps: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return list(steps)


def _callback_payload(url: str, app_secret: str | None, statuses: list[str] | None,
                      delay: float | None) -> dict[str, Any]:
    extra = {"app_secret": app_secret, "statuses": statuses, "delay": delay}
    return {"url": url, **{k: v for k, v in extra.items() if v is not None}}


def _filters(target: str | None, recipient: str | None,
             since: float | None) -> dict[str, Any]:
    params = {"target": target, "recipient": recipient, "since": since}
    return {k: v for k, v in params.items() if v}


class SandboxClient:
    """Synchronous client: `SandboxClient("http://127.0.0.1:9100").script("whatsapp", {...})`."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def script(self, target: str, *steps: dict[str, Any]) -> dict[str, Any]:
        r = self._http.post(f"/_sandbox/script/{target}", json=_steps_payload(steps))
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def fault(self, target: str, mode: str, **params: Any) -> None:
        r = self._http.post(f"/_sandbox/faults/{target}", json={"mode": mode, **params})
        r.raise_for_status()

    def callbacks(self, url: str, *, app_secret: str | None = None,
                  statuses: list[str] | None = None, delay: float | None = None) -> None:
        """Make the fake WhatsApp post status webhooks to `url` after each accepted send."""
        r = self._http.post("/_sandbox/callbacks/whatsapp",
                            json=_callback_payload(url, app_secret, statuses, delay))
        r.raise_for_status()

    def deliveries(self) -> list[dict]:
        r = self._http.get("/_sandbox/callbacks")
        r.raise_for_status()
        return r.json()["deliveries"]  # type: ignore[no-any-return]

    def requests(self, target: str | None = None, recipient: str | None = None,
                 since: float | None = None) -> list[dict]:
        """Oldest first; `since` (a `time.time()`) skips what arrived earlier."""
        r = self._http.get("/_sandbox/requests", params=_filters(target, recipient, since))
        r.raise_for_status()
        return r.json()["requests"]  # type: ignore[no-any-return]

    def reset(self) -> None:
        self._http.delete("/_sandbox/requests").raise_for_status()

    def wait_for(self, target: str, *, recipient: str | None = None, count: int = 1,
                 within: float = 5.0, ok_only: bool = True) -> list[dict]:
        """Poll until `count` requests (answered 2xx unless ok_only=False) have arrived."""
        deadline = time.monotonic() + within
        while True:
            found = [r for r in self.requests(target, recipient)
                     if not ok_only or 200 <= r["status"] < 300]
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)


class AsyncSandboxClient:
    """The same controls for async tests."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSandboxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def script(self, target: str, *steps: dict[str, Any]) -> dict[str, Any]:
        r = await self._http.post(f"/_sandbox/script/{target}", json=_steps_payload(steps))
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    async def fault(self, target: str, mode: str, **params: Any) -> None:
        r = await self._http.post(f"/_sandbox/faults/{target}", json={"mode": mode, **params})
        r.raise_for_status()

    async def callbacks(self, url: str, *, app_secret: str | None = None,
                        statuses: list[str] | None = None, delay: float | None = None) -> None:
        r = await self._http.post("/_sandbox/callbacks/whatsapp",
                                  json=_callback_payload(url, app_secret, statuses, delay))
        r.raise_for_status()

    async def tiktok_echoes(self, url: str, *, app_secret: str,
                            conversations: dict[str, str] | None = None,
                            echo_before_answer: bool = False, delay: float = 0.05) -> None:
        """Every accepted TikTok send is echoed as `im_send_msg` to `url`, as TikTok does."""
        r = await self._http.post("/_sandbox/callbacks/tiktok", json={
            "url": url, "app_secret": app_secret, "conversations": conversations or {},
            "echo_before_answer": echo_before_answer, "delay": delay})
        r.raise_for_status()

    async def close_window(self, account: str, recipient: str, *, open: bool = False) -> None:
        """The Graph fake answers this patient as outside the messaging window (or again
        inside it with `open=True`)."""
        r = await self._http.post("/_sandbox/windows", json={
            "account": account, "recipient": recipient, "open": open})
        r.raise_for_status()

    async def deliveries(self) -> list[dict]:
        r = await self._http.get("/_sandbox/callbacks")
        r.raise_for_status()
        return r.json()["deliveries"]  # type: ignore[no-any-return]

    async def requests(self, target: str | None = None, recipient: str | None = None,
                       since: float | None = None) -> list[dict]:
        r = await self._http.get("/_sandbox/requests",
                                 params=_filters(target, recipient, since))
        r.raise_for_status()
        return r.json()["requests"]  # type: ignore[no-any-return]

    async def reset(self) -> None:
        (await self._http.delete("/_sandbox/requests")).raise_for_status()

    async def wait_for(self, target: str, *, recipient: str | None = None, count: int = 1,
                       within: float = 5.0, ok_only: bool = True) -> list[dict]:
        deadline = time.monotonic() + within
        while True:
            found = [r for r in await self.requests(target, recipient)
                     if not ok_only or 200 <= r["status"] < 300]
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.05)
