from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tistis_sandbox.testing import TIKTOK_PATH

CONVERSATION = "u5JhpselBAhoPOlnH0tZ9y07kg=="


def body(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"business_id": "tt-business-esva",
                           "recipient_type": "CONVERSATION", "recipient": CONVERSATION,
                           "message_type": "TEXT", "text": {"body": "¡Hola! ¿En qué te ayudo?"}}
    out.update(overrides)
    return out


def send(api: TestClient, payload: Any, token: str | None = "tt-token") -> Any:
    headers = {"Access-Token": token} if token else {}
    return api.post(TIKTOK_PATH, json=payload, headers=headers)


def assert_code(response: Any, code: int, http: int = 200) -> dict[str, Any]:
    assert response.status_code == http, response.text
    data = response.json()
    assert data["code"] == code
    assert data["request_id"]
    return data  # type: ignore[no-any-return]


class TestTikTokSend:
    def test_text_answers_code_zero_and_a_message_id(self, api: TestClient) -> None:
        data = assert_code(send(api, body()), 0)
        assert data["message"] == "OK"
        assert data["data"]["message"]["message_id"]

    def test_request_is_recorded_per_conversation(self, api: TestClient) -> None:
        send(api, body())
        [rec] = api.get("/_sandbox/requests",
                        params={"target": "tiktok", "recipient": CONVERSATION}).json()["requests"]
        assert rec["headers"]["access-token"] == "<redacted>"
        assert rec["text"] == "¡Hola! ¿En qué te ayudo?"


class TestTikTokValidation:
    def test_errors_come_with_http_200(self, api: TestClient) -> None:
        assert_code(send(api, body(), token=None), 40104)

    def test_bearer_prefix_is_an_invalid_token(self, api: TestClient) -> None:
        assert_code(send(api, body(), token="Bearer tt-token"), 40105)

    def test_recipient_type_must_be_conversation(self, api: TestClient) -> None:
        assert_code(send(api, body(recipient_type="USER")), 40002)

    def test_text_body_is_required_and_bounded(self, api: TestClient) -> None:
        assert_code(send(api, body(text={})), 40002)
        assert_code(send(api, body(text={"body": "x" * 6001})), 40002)

    def test_only_text_and_image_are_known(self, api: TestClient) -> None:
        assert_code(send(api, body(message_type="VIDEO")), 40002)
        assert_code(send(api, body(business_id="")), 40002)


class TestExpiringTokens:
    """TikTok access tokens last about a day; the fake's `expires-<unix s>-...` tokens stop
    working at that time, with the code TikTok answers for a revoked or expired token."""

    def test_a_token_works_until_it_expires(self, api):
        import time

        assert_code(send(api, body(), token=f"expires-{int(time.time()) + 3600}-abc"), 0)
        assert_code(send(api, body(), token=f"expires-{int(time.time()) - 1}-abc"), 40105)
