"""`tistis-sandbox play` against a stand-in ingress that answers through the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tistis_sandbox import SandboxClient, webhooks
from tistis_sandbox.main import app as cli
from tistis_sandbox.server import serving
from typer.testing import CliRunner

SECRET = "play-secret"


def fake_ingress(sandbox_url: str) -> FastAPI:
    """Checks signatures like the real ingress, then replies the way the dispatcher would."""
    app = FastAPI()

    @app.post("/api/webhook/{channel}/{tenant}")
    async def webhook(request: Request, channel: str, tenant: str) -> JSONResponse:
        raw = await request.body()
        if channel == "tiktok":
            ok = webhooks.verify_tiktok(raw, request.headers.get("tiktok-signature"), SECRET)
        else:
            ok = webhooks.verify_meta(raw, request.headers.get("x-hub-signature-256"), SECRET)
        if not ok:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        payload = json.loads(raw)
        async with httpx.AsyncClient(base_url=sandbox_url) as http:
            if channel == "whatsapp":
                value = payload["entry"][0]["changes"][0]["value"]
                msg = value["messages"][0]
                await http.post(f"/v26.0/{value['metadata']['phone_number_id']}/messages",
                                headers={"Authorization": "Bearer t"},
                                json={"messaging_product": "whatsapp", "to": msg["from"],
                                      "type": "text", "text": {"body": "¡Hola María!"}})
            elif channel == "tiktok":
                content = json.loads(payload["content"])
                await http.post("/open_api/v1.3/business/message/send/",
                                headers={"Access-Token": "t"},
                                json={"business_id": payload["user_openid"],
                                      "recipient_type": "CONVERSATION",
                                      "recipient": content["conversation_id"],
                                      "message_type": "TEXT", "text": {"body": "¡Hola!"}})
            else:
                event = payload["entry"][0]["messaging"][0]
                await http.post(f"/v26.0/{event['recipient']['id']}/messages",
                                params={"access_token": "t"},
                                json={"recipient": event["sender"],
                                      "messaging_type": "RESPONSE",
                                      "message": {"text": "¡Hola!"}})
        return JSONResponse({"status": "ok"})

    return app


@pytest.fixture
def ingress_url(live_url: str) -> Iterator[str]:
    with serving(fake_ingress(live_url)) as url:
        yield url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_APP_SECRET", SECRET)
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", SECRET)


class TestPlay:
    @pytest.mark.parametrize("channel", ["whatsapp", "messenger", "instagram", "tiktok"])
    def test_play_posts_a_signed_webhook_and_shows_the_reply(
        self, channel: str, ingress_url: str, live_url: str, sandbox: SandboxClient, env: None
    ) -> None:
        result = CliRunner().invoke(cli, [
            "play", "Hola, quiero una cita", "--channel", channel, "--tenant", "esva-dental",
            "--ingress", ingress_url, "--sandbox", live_url, "--from", "5215512345678",
            "--name", "María García", "--wait", "5"])
        assert result.exit_code == 0, result.output
        assert f"/api/webhook/{'facebook' if channel == 'messenger' else channel}/" \
               "esva-dental -> 200" in result.output
        assert "reply on" in result.output and "¡Hola" in result.output

    def test_wrong_secret_shows_the_refusal(
        self, ingress_url: str, live_url: str, sandbox: SandboxClient,
        monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("META_APP_SECRET", "wrong")
        result = CliRunner().invoke(cli, ["play", "Hola", "--ingress", ingress_url,
                                          "--sandbox", live_url, "--wait", "0"])
        assert result.exit_code == 1
        assert "-> 401" in result.output

    def test_no_reply_yet_is_said(self, live_url: str, sandbox: SandboxClient,
                                  env: None) -> None:
        silent = FastAPI()

        @silent.post("/api/webhook/{channel}/{tenant}")
        async def accept(channel: str, tenant: str) -> dict[str, str]:
            return {"status": "ok"}

        with serving(silent) as url:
            result = CliRunner().invoke(cli, ["play", "Hola", "--ingress", url,
                                              "--sandbox", live_url, "--wait", "0.3"])
        assert result.exit_code == 0, result.output
        assert "none yet" in result.output
