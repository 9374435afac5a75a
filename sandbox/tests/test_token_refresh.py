"""The fakes' token refresh endpoints, in the platforms' wire formats.

TikTok Accounts API (the tokens Business Messaging uses): `POST /open_api/v1.3/tt_user/oauth2/
refresh_token/` with JSON `{"client_id", "client_secret", "grant_type": "refresh_token",
"refresh_token"}`; sources github.com/bububa/tiktok-business (ttuser.RefreshToken) and
github.com/tiktok/tiktok-business-api-sdk (js_sdk/docs/AuthenticationApi.md).
Instagram API with Instagram Login: `GET /refresh_access_token?grant_type=ig_refresh_token&
access_token=...`; source developers.facebook.com/documentation/instagram-platform/reference/
refresh_access_token.
"""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from tistis_sandbox.wire import expiring_token

TIKTOK_REFRESH = "/open_api/v1.3/tt_user/oauth2/refresh_token/"
SEND = "/open_api/v1.3/business/message/send/"


def refresh_body(token: str) -> dict[str, str]:
    return {"client_id": "ck", "client_secret": "cs", "grant_type": "refresh_token",
            "refresh_token": token}


class TestTikTokRefresh:
    def test_a_refresh_answers_a_day_long_token_and_rotates_the_refresh_token(
        self, api: TestClient
    ) -> None:
        answer = api.post(TIKTOK_REFRESH, json=refresh_body("rft-1")).json()
        assert answer["code"] == 0 and answer["message"] == "OK" and answer["request_id"]
        data = answer["data"]
        assert set(data) == {"access_token", "expires_in", "refresh_token",
                             "refresh_token_expires_in", "open_id", "scope", "token_type"}
        assert data["expires_in"] == 86400 and data["refresh_token"] != "rft-1"
        send = api.post(SEND, headers={"Access-Token": data["access_token"]}, json={
            "business_id": "b", "recipient_type": "CONVERSATION", "recipient": "c",
            "message_type": "TEXT", "text": {"body": "hola"}}).json()
        assert send["code"] == 0
        # The refresh token used is refused from then on, as TikTok's rotation does.
        again = api.post(TIKTOK_REFRESH, json=refresh_body("rft-1")).json()
        assert again["code"] == 40105 and again["data"] == {}

    def test_a_revoked_refresh_token_or_a_missing_field_is_refused(self, api: TestClient) -> None:
        assert api.post(TIKTOK_REFRESH, json=refresh_body("revoked-x")).json()["code"] == 40105
        body = refresh_body("rft-2")
        del body["client_secret"]
        assert api.post(TIKTOK_REFRESH, json=body).json()["code"] == 40002


class TestInstagramRefresh:
    def test_a_valid_token_is_renewed_for_60_days(self, api: TestClient) -> None:
        old = expiring_token(86400, "ig")
        response = api.get("/refresh_access_token",
                           params={"grant_type": "ig_refresh_token", "access_token": old})
        body = response.json()
        assert response.status_code == 200 and set(body) == {"access_token", "token_type",
                                                               "expires_in"}
        assert body["token_type"] == "bearer" and body["expires_in"] == 60 * 86400
        assert body["access_token"] != old
        [row] = api.get("/_sandbox/requests").json()["requests"]
        assert row["query"]["access_token"] == "<redacted>"

    def test_an_expired_token_cannot_be_refreshed(self, api: TestClient) -> None:
        expired = f"expires-{int(time.time()) - 5}-ig"
        response = api.get("/refresh_access_token",
                           params={"grant_type": "ig_refresh_token", "access_token": expired})
        assert response.status_code in (400, 401)
        assert response.json()["error"]["code"] == 190
