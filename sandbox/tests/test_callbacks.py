"""Status webhooks sent back by the fake WhatsApp after a send."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tistis_sandbox import SandboxClient, webhooks
from tistis_sandbox.server import serving
from tistis_sandbox.testing import BEARER, WA_PATH

SECRET = "callback-secret"
WA_TEXT = {"messaging_product": "whatsapp", "to": "5215512345678", "type": "text",
           "text": {"body": "Tu cita es mañana"}}


class Receiver:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/api/webhook/whatsapp/esva-dental")
        async def receive(request: Request) -> JSONResponse:
            raw = await request.body()
            if not webhooks.verify_meta(raw, request.headers.get("x-hub-signature-256"),
                                        SECRET):
                return JSONResponse({"error": "bad signature"}, status_code=401)
            value = json.loads(raw)["entry"][0]["changes"][0]["value"]
            self.statuses.extend(value["statuses"])
            return JSONResponse({"status": "ok"})

    def wait(self, count: int, within: float = 3.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while len(self.statuses) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.statuses


@pytest.fixture
def receiver(sandbox: SandboxClient) -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with serving(rec.app) as url:
        sandbox.callbacks(f"{url}/api/webhook/whatsapp/esva-dental", app_secret=SECRET,
                          delay=0.01)
        yield rec, url


def send(live_url: str) -> str:
    r = httpx.post(live_url + WA_PATH, json=WA_TEXT, headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()["messages"][0]["id"]  # type: ignore[no-any-return]


class TestStatusCallbacks:
    def test_accepted_send_is_followed_by_sent_delivered_read(
        self, live_url: str, sandbox: SandboxClient, receiver: tuple[Receiver, str]
    ) -> None:
        rec, _ = receiver
        wamid = send(live_url)
        statuses = rec.wait(3)
        assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
        assert {s["id"] for s in statuses} == {wamid}
        assert statuses[0]["recipient_id"] == "5215512345678"
        assert [d["http_status"] for d in sandbox.deliveries()] == [200, 200, 200]

    def test_async_error_is_a_failed_status(
        self, live_url: str, sandbox: SandboxClient, receiver: tuple[Receiver, str]
    ) -> None:
        rec, _ = receiver
        sandbox.script("whatsapp", {"async_error_code": 131026})
        wamid = send(live_url)
        [failed] = rec.wait(1)
        assert (failed["id"], failed["status"]) == (wamid, "failed")
        assert failed["errors"][0]["code"] == 131026
        time.sleep(0.1)
        assert len(rec.statuses) == 1  # no delivered/read after a failure

    def test_no_callbacks_without_registration(self, live_url: str,
                                               sandbox: SandboxClient) -> None:
        send(live_url)
        time.sleep(0.1)
        assert sandbox.deliveries() == []
