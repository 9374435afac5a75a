from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tistis_sandbox.testing import BEARER, PAGE_ID, PAGE_PATH

PSID = "6543210987654321"


def body(message: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                           "message": message or {"text": "¡Hola! ¿En qué te ayudo?"}}
    out.update(extra)
    return out


def send(api: TestClient, payload: Any, token: str | None = "page-token") -> Any:
    params = {"access_token": token} if token else {}
    return api.post(PAGE_PATH, json=payload, params=params)


def assert_error(response: Any, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    return error  # type: ignore[no-any-return]


def quick_replies(n: int, title: str = "Sí") -> list[dict[str, str]]:
    return [{"content_type": "text", "title": title, "payload": f"QR_{i}"} for i in range(n)]


def button_template(n: int, title: str = "Agendar") -> dict[str, Any]:
    buttons = [{"type": "postback", "title": title, "payload": f"B{i}"} for i in range(n)]
    return {"attachment": {"type": "template", "payload": {
        "template_type": "button", "text": "¿Qué deseas hacer?", "buttons": buttons}}}


class TestSendApi:
    def test_text_answers_recipient_and_message_id(self, api: TestClient) -> None:
        r = send(api, body())
        assert r.status_code == 200
        data = r.json()
        assert data["recipient_id"] == PSID
        assert data["message_id"].startswith("m_")

    def test_bearer_token_works_too(self, api: TestClient) -> None:
        assert api.post(PAGE_PATH, json=body(), headers=BEARER).status_code == 200

    def test_token_in_query_is_not_recorded(self, api: TestClient) -> None:
        send(api, body(), token="secret-page-token")
        [rec] = api.get("/_sandbox/requests", params={"target": "graph"}).json()["requests"]
        assert rec["query"]["access_token"] == "<redacted>"
        assert rec["recipient"] == PSID
        assert rec["text"] == "¡Hola! ¿En qué te ayudo?"

    def test_quick_replies_buttons_and_media(self, api: TestClient) -> None:
        assert send(api, body({"text": "¿Te agendo?", "quick_replies": quick_replies(13)})
                    ).status_code == 200
        assert send(api, body(button_template(3))).status_code == 200
        image = {"attachment": {"type": "image",
                                "payload": {"url": "https://example.com/a.jpg"}}}
        assert send(api, body(image)).status_code == 200

    def test_human_agent_tag_is_accepted(self, api: TestClient) -> None:
        payload = body(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
        assert send(api, payload).status_code == 200

    def test_sender_action_has_no_message_id(self, api: TestClient) -> None:
        r = send(api, {"recipient": {"id": PSID}, "sender_action": "typing_on"})
        assert r.status_code == 200
        assert r.json() == {"recipient_id": PSID}


class TestSendApiValidation:
    def test_missing_token_is_190(self, api: TestClient) -> None:
        assert_error(send(api, body(), token=None), 401, 190)

    def test_text_over_2000_is_refused(self, api: TestClient) -> None:
        assert send(api, body({"text": "x" * 2000})).status_code == 200
        assert_error(send(api, body({"text": "x" * 2001})), 400, 100)

    def test_messaging_type_is_required(self, api: TestClient) -> None:
        payload = body()
        del payload["messaging_type"]
        assert_error(send(api, payload), 400, 100)

    def test_deprecated_tags_are_refused(self, api: TestClient) -> None:
        payload = body(messaging_type="MESSAGE_TAG", tag="CONFIRMED_EVENT_UPDATE")
        assert_error(send(api, payload), 400, 100)
        assert_error(send(api, body(messaging_type="MESSAGE_TAG")), 400, 100)

    def test_quick_reply_limits(self, api: TestClient) -> None:
        too_many = body({"text": "?", "quick_replies": quick_replies(14)})
        assert_error(send(api, too_many), 400, 100)
        too_long = body({"text": "?", "quick_replies": quick_replies(1, "x" * 21)})
        assert_error(send(api, too_long), 400, 100)

    def test_button_template_limits(self, api: TestClient) -> None:
        assert_error(send(api, body(button_template(4))), 400, 100)
        assert_error(send(api, body(button_template(1, "x" * 21))), 400, 100)

    def test_text_and_attachment_together_are_refused(self, api: TestClient) -> None:
        both = {"text": "hola", **button_template(1)}
        assert_error(send(api, body(both)), 400, 100)

    def test_recipient_is_required(self, api: TestClient) -> None:
        assert_error(send(api, {"messaging_type": "RESPONSE", "message": {"text": "x"}}),
                     400, 100)


IG_PATH = PAGE_PATH.replace(f"/{PAGE_ID}/", "/17841400000000001/")


class TestInstagramRules:
    """Instagram takes at most 1,000 UTF-8 bytes ("must be UTF-8 and less than 1000 bytes",
    Instagram messaging API reference); outside the window it answers code 10 / subcode
    2534022 (developers.facebook.com/docs/messenger-platform/error-codes)."""

    def test_text_over_1000_bytes_is_refused_under_1000_characters(self, api):
        text = "😀" * 300  # 300 characters, 1,200 bytes
        answer = api.post(IG_PATH, json=body({"text": text}), params={"access_token": "t"})
        error = assert_error(answer, 400, 100)
        assert "1000" in error["message"]
        assert api.post(PAGE_PATH, json=body({"text": text}),
                        params={"access_token": "t"}).status_code == 200

    def test_a_closed_window_answers_2534022_on_instagram_2018278_on_messenger(self, api):
        for path, account, subcode in ((IG_PATH, "17841400000000001", 2534022),
                                       (PAGE_PATH, PAGE_ID, 2018278)):
            api.post("/_sandbox/windows", json={"account": account, "recipient": PSID})
            answer = api.post(path, json=body(), params={"access_token": "t"})
            assert assert_error(answer, 400, 10)["error_subcode"] == subcode
            api.post("/_sandbox/windows", json={"account": account, "recipient": PSID,
                                                "open": True})
            assert api.post(path, json=body(), params={"access_token": "t"}).status_code == 200
