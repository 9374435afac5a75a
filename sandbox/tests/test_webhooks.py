from __future__ import annotations

import hashlib
import hmac
import json
import time

from tistis_sandbox import webhooks as wh

SECRET = "test-app-secret"
WA_ID = "5215512345678"


def meta_hmac(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class TestMetaSignature:
    def test_header_is_hmac_sha256_of_the_raw_body(self) -> None:
        body, headers = wh.sign_meta(wh.whatsapp_payload([wh.wa_text(WA_ID, "Hola")]), SECRET)
        assert headers["X-Hub-Signature-256"] == meta_hmac(body)
        sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        assert headers["X-Hub-Signature"] == f"sha1={sha1}"
        assert wh.verify_meta(body, headers["X-Hub-Signature-256"], SECRET)
        assert not wh.verify_meta(body, headers["X-Hub-Signature-256"], "other-secret")
        assert not wh.verify_meta(body + b" ", headers["X-Hub-Signature-256"], SECRET)

    def test_body_escapes_like_meta_so_reserializing_breaks_the_signature(self) -> None:
        payload = wh.whatsapp_payload([wh.wa_text(WA_ID, "¿Cita mañana? https://x.mx/a")])
        body, headers = wh.sign_meta(payload, SECRET)
        assert b"\\u00f1" in body and b"\\/" in body
        assert json.loads(body) == payload
        reserialized = json.dumps(json.loads(body), ensure_ascii=False).encode()
        assert not wh.verify_meta(reserialized, headers["X-Hub-Signature-256"], SECRET)


class TestTikTokSignature:
    def test_header_signs_timestamp_dot_body(self) -> None:
        payload = wh.tiktok_payload("Hola", user_id="user-1")
        body, headers = wh.sign_tiktok(payload, SECRET, timestamp=1_700_000_000)
        t, s = (part.split("=", 1)[1] for part in headers["Tiktok-Signature"].split(","))
        assert t == "1700000000"
        expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
        assert s == expected

    def test_verify_rejects_stale_or_forged(self) -> None:
        body, headers = wh.sign_tiktok(wh.tiktok_payload("Hola", user_id="u"), SECRET)
        sig = headers["Tiktok-Signature"]
        assert wh.verify_tiktok(body, sig, SECRET)
        assert not wh.verify_tiktok(body, sig, "other")
        assert not wh.verify_tiktok(body, sig, SECRET, now=int(time.time()) + 301)
        assert not wh.verify_tiktok(body, "t=1,s=00", SECRET)


class TestWhatsAppPayloads:
    def test_text_message_envelope(self) -> None:
        payload = wh.whatsapp_payload([wh.wa_text(WA_ID, "Hola", message_id="wamid.X",
                                                  timestamp=1_700_000_000)],
                                      name="María García", phone_number_id="123")
        assert payload["object"] == "whatsapp_business_account"
        [entry] = payload["entry"]
        [change] = entry["changes"]
        assert change["field"] == "messages"
        value = change["value"]
        assert value["messaging_product"] == "whatsapp"
        assert value["metadata"]["phone_number_id"] == "123"
        assert value["contacts"] == [{"profile": {"name": "María García"}, "wa_id": WA_ID}]
        assert value["messages"] == [{"from": WA_ID, "id": "wamid.X", "timestamp": "1700000000",
                                      "type": "text", "text": {"body": "Hola"}}]

    def test_replies_to_interactive_and_templates(self) -> None:
        row = wh.wa_list_reply(WA_ID, "cleaning", "Limpieza", "45 min")
        assert row["interactive"]["list_reply"] == {"id": "cleaning", "title": "Limpieza",
                                                    "description": "45 min"}
        tpl = wh.wa_template_button(WA_ID, "CONFIRM_APPT", "Confirmar")
        assert tpl["type"] == "button"
        assert tpl["button"] == {"payload": "CONFIRM_APPT", "text": "Confirmar"}

    def test_failed_status_carries_the_error(self) -> None:
        payload = wh.whatsapp_status("wamid.OUT", "failed", WA_ID, error_code=131047,
                                     error_title="Re-engagement message")
        value = payload["entry"][0]["changes"][0]["value"]
        assert "messages" not in value and "contacts" not in value
        [status] = value["statuses"]
        assert (status["id"], status["status"], status["recipient_id"]) == (
            "wamid.OUT", "failed", WA_ID)
        assert status["errors"][0]["code"] == 131047
        delivered = wh.whatsapp_status("wamid.OUT", "delivered", WA_ID)
        assert "conversation" in delivered["entry"][0]["changes"][0]["value"]["statuses"][0]


class TestMessagingPayloads:
    def test_messenger_is_object_page(self) -> None:
        payload = wh.messenger_payload("Hola", sender_id="PSID1", page_id="PAGE1",
                                       quick_reply_payload="YES")
        assert payload["object"] == "page"
        [entry] = payload["entry"]
        assert entry["id"] == "PAGE1"
        [event] = entry["messaging"]
        assert event["sender"] == {"id": "PSID1"}
        assert event["recipient"] == {"id": "PAGE1"}
        assert event["message"]["text"] == "Hola"
        assert event["message"]["mid"].startswith("m_")
        assert event["message"]["quick_reply"] == {"payload": "YES"}

    def test_instagram_is_object_instagram_and_postbacks_work(self) -> None:
        payload = wh.instagram_payload(None, sender_id="IGSID", ig_id="IG1",
                                       postback={"title": "Agendar", "payload": "BOOK"})
        assert payload["object"] == "instagram"
        event = payload["entry"][0]["messaging"][0]
        assert event["postback"]["payload"] == "BOOK"
        assert "message" not in event


class TestTikTokPayload:
    def test_content_is_a_json_string(self) -> None:
        payload = wh.tiktok_payload("Hola", user_id="user-1", business_id="biz",
                                    client_key="ck", create_time=1_700_000_000)
        assert set(payload) == {"client_key", "event", "create_time", "user_openid", "content"}
        assert payload["event"] == "im_receive_msg"
        assert payload["user_openid"] == "biz"
        content = json.loads(payload["content"])
        assert content["text"] == {"body": "Hola"}
        assert content["type"] == "text"
        assert content["from_user"] == {"id": "user-1", "role": "personal_account"}
        assert content["conversation_id"] == wh.tiktok_conversation_id("user-1")
        assert content["timestamp"] == 1_700_000_000_000
