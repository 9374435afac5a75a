"""Tokens that expire are refreshed before they do, with the refresh token kept per connection.

Wire formats (the sandbox's fakes speak them, the dispatcher's clients call them):
- TikTok Accounts API, whose tokens Business Messaging uses: access token a day, refresh token
  a year, rotated on refresh. `POST /open_api/v1.3/tt_user/oauth2/refresh_token/` with JSON
  `{"client_id", "client_secret", "grant_type": "refresh_token", "refresh_token"}`, answer
  `{"code": 0, "data": {"access_token", "expires_in", "refresh_token", ...}}`.
  Sources: github.com/bububa/tiktok-business (api/ttuser RefreshToken: POST
  "v1.3/tt_user/oauth2/refresh_token/"), github.com/tiktok/tiktok-business-api-sdk
  (js_sdk/docs/AuthenticationApi.md: creator token 24 h, refresh token one year, "refresh the
  access token with the refresh token on a daily basis").
- Instagram API with Instagram Login: `GET graph.instagram.com/refresh_access_token
  ?grant_type=ig_refresh_token&access_token=...` -> `{"access_token", "token_type": "bearer",
  "expires_in"}` (60 days). Source: developers.facebook.com/documentation/instagram-platform/
  reference/refresh_access_token.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from tistis_common.db import tenant_tx
from tistis_common.secrets import DEV_KEY, SecretBox
from tistis_common.topology import DISPATCHER_OUTBOUND
from tistis_dispatcher import tokens
from tistis_sandbox.wire import expiring_token, token_fingerprint

from .test_errors_and_exactly_once import ok_requests, take_from_dlq

BOX = SecretBox(DEV_KEY)
TIKTOK_REFRESH_PATH = "/open_api/v1.3/tt_user/oauth2/refresh_token/"


def refreshes(metric_outcome: str, channel: str) -> float:
    return REGISTRY.get_sample_value(
        "tistis_token_refreshes_total", {"channel": channel, "outcome": metric_outcome}) or 0.0


async def expiring(clinic, conv, *, access_token: str, expires_in: timedelta,
                   refresh_token: str | None = None) -> None:
    """The connection as the CLI stores one whose token expires (secrets sealed)."""
    async with tenant_tx(clinic.pool, conv.tenant.id) as conn:
        await conn.execute(
            """UPDATE channel_connections SET access_token = $2, refresh_token = $3,
                 token_expires_at = now() + $4::interval, app_id = $5, app_secret = $6
               WHERE channel = $1""",
            conv.channel, BOX.seal(access_token), BOX.seal(refresh_token), expires_in,
            f"client-key-{conv.tenant.slug}", BOX.seal("client-secret"))


async def tiktok_refreshes(sandbox, conv, since: float) -> list[dict]:
    return [r for r in await sandbox.requests("tiktok", since=since)
            if r["path"] == TIKTOK_REFRESH_PATH
            and (r["json"] or {}).get("client_id") == f"client-key-{conv.tenant.slug}"]


class TestRefreshBeforeExpiry:
    async def test_a_tiktok_token_near_expiry_is_refreshed_and_the_send_uses_the_new_one(
        self, clinic, sandbox, make_tenant
    ):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        since = time.time()
        old = expiring_token(600, "old")  # still valid, but within the 6 h margin
        await expiring(clinic, conv, access_token=old, expires_in=timedelta(minutes=10),
                       refresh_token="rft-first")
        before = refreshes("refreshed", "tiktok")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")

        [refresh] = await tiktok_refreshes(sandbox, conv, since)
        assert refresh["json"] == {"client_id": f"client-key-{conv.tenant.slug}",
                                   "client_secret": "client-secret",
                                   "grant_type": "refresh_token", "refresh_token": "rft-first"}
        row = await clinic.connection_row(conv)
        assert row["access_token"].startswith("fernet:") and row["refresh_token"].startswith("fernet:")
        new_access, new_refresh = BOX.open(row["access_token"]), BOX.open(row["refresh_token"])
        assert new_access != old and new_refresh != "rft-first"  # TikTok rotates both
        assert row["token_expires_at"] - datetime.now(UTC) > timedelta(hours=23)
        assert row["healthy"] and row["token_refresh_error"] is None
        [send] = await ok_requests(sandbox, "tiktok", conv.tiktok_conversation_id)
        assert send["token"] == token_fingerprint(new_access) and send["time"] >= refresh["time"]
        assert refreshes("refreshed", "tiktok") == before + 1

    async def test_the_periodic_round_renews_an_instagram_login_token(
        self, clinic, sandbox, make_tenant, dispatcher
    ):
        conv = await clinic.conversation(await make_tenant(), "instagram")
        old = expiring_token(86400, "ig-old")  # a day left of 60: within the 7-day margin
        await expiring(clinic, conv, access_token=old, expires_in=timedelta(days=1))
        since = time.time()
        assert await tokens.refresh_expiring(dispatcher.deps) >= 1

        [refresh] = [r for r in await sandbox.requests("graph", since=since)
                     if r["path"] == "/refresh_access_token"
                     and r["token"] == token_fingerprint(old)]
        assert refresh["method"] == "GET" and refresh["query"]["grant_type"] == "ig_refresh_token"
        row = await clinic.connection_row(conv)
        new = BOX.open(row["access_token"])
        assert new != old and row["refresh_token"] is None  # Instagram renews the token itself
        assert row["token_expires_at"] - datetime.now(UTC) > timedelta(days=59)

        event = clinic.outbound(conv)
        await clinic.publish(event)
        await clinic.until_status(conv, event.message_id, "sent")
        [send] = await ok_requests(sandbox, "graph", conv.recipient)
        assert send["token"] == token_fingerprint(new)
        await tokens.refresh_expiring(dispatcher.deps)  # renewed: not due again
        assert (await clinic.connection_row(conv))["access_token"] == row["access_token"]


class TestRefreshOnExpired:
    async def test_an_expired_answer_refreshes_once_and_the_send_goes_once(
        self, clinic, sandbox, make_tenant
    ):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        since = time.time()
        # We think it lasts another day; TikTok says 40105 (revoked early, clocks apart).
        await expiring(clinic, conv, access_token="expired-early", expires_in=timedelta(days=1),
                       refresh_token="rft-ok")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        row = await clinic.until_status(conv, event.message_id, "sent")

        sends = await sandbox.requests("tiktok", conv.tiktok_conversation_id)
        assert [r["error_code"] for r in sends] == [40105, None]  # refused, then sent once
        assert row["platform_message_id"] == sends[1]["answered_id"]
        assert len(await tiktok_refreshes(sandbox, conv, since)) == 1
        connection = await clinic.connection_row(conv)
        assert sends[1]["token"] == token_fingerprint(BOX.open(connection["access_token"]))
        assert connection["healthy"]


class TestRefreshRefused:
    async def test_a_refused_refresh_marks_the_connection_unhealthy_and_parks_the_message(
        self, clinic, sandbox, make_tenant, amqp, capfd
    ):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        await expiring(clinic, conv, access_token="expired-token", expires_in=timedelta(days=1),
                       refresh_token="revoked-refresh-token")
        before = refreshes("refused", "tiktok")
        event = clinic.outbound(conv)
        await clinic.publish(event)
        channel = await amqp.channel()
        parked = await take_from_dlq(channel, DISPATCHER_OUTBOUND["tiktok"].dlq,
                                     str(event.message_id))
        assert parked is not None

        connection = await clinic.connection_row(conv)
        assert not connection["healthy"]
        assert connection["token_refresh_error"].startswith("token refresh: ")
        assert refreshes("refused", "tiktok") == before + 1
        labels = {"tenant": conv.tenant.slug, "channel": "tiktok"}
        assert REGISTRY.get_sample_value("tistis_connection_healthy", labels) == 0
        assert (await clinic.message(conv, event.message_id))["status"] == "pending"
        sends = await sandbox.requests("tiktok", conv.tiktok_conversation_id)
        assert [r["error_code"] for r in sends] == [40105]  # nothing sent with a new token
        logged = "".join(capfd.readouterr())
        assert "token.refresh_refused" in logged and "revoked-refresh-token" not in logged

    async def test_a_refused_refresh_is_not_retried_every_round(self, clinic, make_tenant,
                                                                dispatcher):
        conv = await clinic.conversation(await make_tenant(), "tiktok")
        await expiring(clinic, conv, access_token=expiring_token(600, "x"),
                       expires_in=timedelta(minutes=10), refresh_token="revoked-again")
        before = refreshes("refused", "tiktok")
        await tokens.refresh_expiring(dispatcher.deps)
        assert refreshes("refused", "tiktok") == before + 1
        assert (await clinic.connection_row(conv))["token_refresh_error"] is not None
        await tokens.refresh_expiring(dispatcher.deps)  # waits for a new token from the clinic
        assert refreshes("refused", "tiktok") == before + 1
