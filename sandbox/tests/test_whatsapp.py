from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from tistis_sandbox.testing import BEARER, WA_PATH


def text_body(body: str = "Hola", to: str = "5215512345678") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"body": body}}


def buttons_body(buttons: list[dict[str, Any]], body: str = "¿Confirmas tu cita?") -> dict:
    return {"messaging_product": "whatsapp", "to": "5215512345678", "type": "interactive",
            "interactive": {"type": "button", "body": {"text": body},
                            "action": {"buttons": buttons}}}


def button(bid: str, title: str) -> dict[str, Any]:
    return {"type": "reply", "reply": {"id": bid, "title": title}}


def list_body(sections: list[dict[str, Any]], button_text: str = "Ver servicios") -> dict:
    return {"messaging_product": "whatsapp", "to": "5215512345678", "type": "interactive",
            "interactive": {"type": "list", "body": {"text": "Elige un servicio"},
                            "action": {"button": button_text, "sections": sections}}}


def rows(n: int, prefix: str = "r") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "title": f"Servicio {i}"} for i in range(n)]


def send(api: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return api.post(WA_PATH, json=body, headers=BEARER if headers is None else headers)


def assert_error(response: Any, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["fbtrace_id"]
    return error  # type: ignore[no-any-return]


class TestWhatsAppSend:
    def test_text_answers_like_cloud_api(self, api: TestClient) -> None:
        r = send(api, text_body(to="+5215512345678"))
        assert r.status_code == 200
        data = r.json()
        assert data["messaging_product"] == "whatsapp"
        assert data["contacts"] == [{"input": "+5215512345678", "wa_id": "5215512345678"}]
        assert data["messages"][0]["id"].startswith("wamid.")

    def test_every_message_gets_a_new_wamid(self, api: TestClient) -> None:
        ids = {send(api, text_body()).json()["messages"][0]["id"] for _ in range(5)}
        assert len(ids) == 5

    def test_request_is_recorded_without_the_token(self, api: TestClient) -> None:
        wamid = send(api, text_body("Tu cita es mañana")).json()["messages"][0]["id"]
        [rec] = api.get("/_sandbox/requests", params={"target": "whatsapp"}).json()["requests"]
        assert rec["headers"]["authorization"] == "<redacted>"
        assert rec["answered_id"] == wamid
        assert rec["recipient"] == "5215512345678"
        assert rec["text"] == "Tu cita es mañana"
        assert rec["json"]["text"]["body"] == "Tu cita es mañana"

    def test_template_with_body_parameters_is_accepted(self, api: TestClient) -> None:
        body = {"messaging_product": "whatsapp", "to": "5215512345678", "type": "template",
                "template": {"name": "cita_confirmada", "language": {"code": "es_MX"},
                             "components": [{"type": "body", "parameters": [
                                 {"type": "text", "text": "María"},
                                 {"type": "text", "text": "Lunes 15 de Enero"}]}]}}
        r = send(api, body)
        assert r.status_code == 200
        assert r.json()["messages"][0]["message_status"] == "accepted"

    def test_media_by_link_is_accepted(self, api: TestClient) -> None:
        body = {"messaging_product": "whatsapp", "to": "5215512345678", "type": "document",
                "document": {"link": "https://example.com/cotizacion.pdf",
                             "filename": "cotizacion.pdf", "caption": "Tu cotización"}}
        assert send(api, body).status_code == 200

    def test_valid_buttons_and_list_are_accepted(self, api: TestClient) -> None:
        three = [button("confirm", "✅ Confirmar"), button("reschedule", "📅 Reprogramar"),
                 button("cancel", "Cancelar")]
        assert send(api, buttons_body(three)).status_code == 200
        sections = [{"title": "Dental", "rows": rows(5, "a")},
                    {"title": "Estética", "rows": rows(5, "b")}]
        assert send(api, list_body(sections)).status_code == 200


class TestWhatsAppValidation:
    def test_missing_token_is_190_with_401(self, api: TestClient) -> None:
        assert_error(send(api, text_body(), headers={}), 401, 190)

    def test_expired_token_is_190_with_subcode(self, api: TestClient) -> None:
        r = send(api, text_body(), headers={"Authorization": "Bearer expired-token"})
        assert assert_error(r, 401, 190)["error_subcode"] == 463

    def test_messaging_product_is_required(self, api: TestClient) -> None:
        body = text_body()
        del body["messaging_product"]
        assert_error(send(api, body), 400, 100)

    def test_text_over_4096_is_refused(self, api: TestClient) -> None:
        assert send(api, text_body("x" * 4096)).status_code == 200
        assert_error(send(api, text_body("x" * 4097)), 400, 131009)

    def test_missing_recipient_is_refused(self, api: TestClient) -> None:
        body = text_body()
        del body["to"]
        assert_error(send(api, body), 400, 131008)

    def test_unknown_type_is_refused(self, api: TestClient) -> None:
        assert_error(send(api, {**text_body(), "type": "carousel"}), 400, 100)

    def test_four_buttons_are_refused(self, api: TestClient) -> None:
        four = [button(str(i), f"Opción {i}") for i in range(4)]
        assert_error(send(api, buttons_body(four)), 400, 131009)

    def test_button_title_over_20_is_refused(self, api: TestClient) -> None:
        assert_error(send(api, buttons_body([button("a", "x" * 21)])), 400, 131009)

    def test_duplicate_button_ids_are_refused(self, api: TestClient) -> None:
        dup = [button("same", "Uno"), button("same", "Dos")]
        assert_error(send(api, buttons_body(dup)), 400, 131009)

    def test_interactive_body_over_1024_is_refused(self, api: TestClient) -> None:
        assert_error(send(api, buttons_body([button("a", "Sí")], "x" * 1025)), 400, 131009)

    def test_list_with_eleven_rows_is_refused(self, api: TestClient) -> None:
        sections = [{"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}]
        assert_error(send(api, list_body(sections)), 400, 131009)

    def test_list_with_eleven_sections_is_refused(self, api: TestClient) -> None:
        sections = [{"title": f"S{i}", "rows": rows(1, f"s{i}")} for i in range(11)]
        assert_error(send(api, list_body(sections)), 400, 131009)

    def test_list_limits_on_texts(self, api: TestClient) -> None:
        long_row = [{"id": "a", "title": "x" * 25}]
        assert_error(send(api, list_body([{"title": "A", "rows": long_row}])), 400, 131009)
        long_desc = [{"id": "a", "title": "Limpieza", "description": "x" * 73}]
        assert_error(send(api, list_body([{"title": "A", "rows": long_desc}])), 400, 131009)
        assert_error(send(api, list_body([{"title": "x" * 25, "rows": rows(1)}])), 400, 131009)
        assert_error(send(api, list_body([{"rows": rows(1)}], "x" * 21)), 400, 131009)

    def test_template_needs_language(self, api: TestClient) -> None:
        body = {"messaging_product": "whatsapp", "to": "5215512345678", "type": "template",
                "template": {"name": "cita_confirmada"}}
        assert_error(send(api, body), 400, 131008)

    def test_media_needs_a_link(self, api: TestClient) -> None:
        body = {"messaging_product": "whatsapp", "to": "5215512345678", "type": "image",
                "image": {"link": "not a url"}}
        assert_error(send(api, body), 400, 131009)

    def test_body_that_is_not_json_is_refused(self, api: TestClient) -> None:
        r = api.post(WA_PATH, content=b"{nope", headers={**BEARER,
                                                        "Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == 100


class TestTemplateParametersAndRecipients:
    """Meta refuses a template parameter with a newline, a tab or more than 4 consecutive
    spaces (github.com/netflie/whatsapp-cloud-api/issues/201); a business-scoped user id goes
    in `recipient` (docs.kapso.ai/docs/whatsapp/business-scoped-user-ids.md)."""

    @staticmethod
    def template(param: str, **recipient: str) -> dict[str, Any]:
        return {"messaging_product": "whatsapp", **(recipient or {"to": "5215512345678"}),
                "type": "template", "template": {
                    "name": "recordatorio_cita", "language": {"code": "es_MX"},
                    "components": [{"type": "body", "parameters": [
                        {"type": "text", "text": param}]}]}}

    def test_bad_parameter_text_is_refused(self, api):
        for param in ("Av. Juárez 1\nCentro", "a\tb", "a     b"):
            answer = api.post(WA_PATH, json=self.template(param), headers=BEARER)
            assert answer.status_code == 400
            assert "new-line/tab" in answer.json()["error"]["error_data"]["details"]
        assert api.post(WA_PATH, json=self.template("a    b"), headers=BEARER).status_code == 200

    def test_recipient_takes_a_business_scoped_user_id(self, api):
        answer = api.post(WA_PATH, json=self.template("Ana", recipient="US.13491208655302741918"),
                          headers=BEARER)
        assert answer.status_code == 200, answer.text
        assert answer.json()["contacts"][0]["user_id"] == "US.13491208655302741918"
        both = self.template("Ana", to="5215512345678", recipient="US.1349")
        assert api.post(WA_PATH, json=both, headers=BEARER).status_code == 400
        wrong = self.template("Ana", recipient="5215512345678")
        assert api.post(WA_PATH, json=wrong, headers=BEARER).status_code == 400
