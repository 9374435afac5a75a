"""Paths, headers and minimal send bodies that the sandbox's own tests (and the services'
tests) send to the fakes."""

from __future__ import annotations

GRAPH_VERSION = "v26.0"
PHONE_NUMBER_ID = "100000000000001"
PAGE_ID = "100000000000101"
WA_PATH = f"/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages"
PAGE_PATH = f"/{GRAPH_VERSION}/{PAGE_ID}/messages"
TIKTOK_PATH = "/open_api/v1.3/business/message/send/"
BEARER = {"Authorization": "Bearer sandbox-token"}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-sandbox", "anthropic-version": "2023-06-01"}

# The smallest valid text send of each platform.
WA_TEXT = {"messaging_product": "whatsapp", "to": "5215512345678", "type": "text",
           "text": {"body": "Hola"}}
PAGE_TEXT = {"recipient": {"id": "123"}, "messaging_type": "RESPONSE",
             "message": {"text": "Hola"}}
TT_TEXT = {"business_id": "b", "recipient_type": "CONVERSATION", "recipient": "c",
           "message_type": "TEXT", "text": {"body": "Hola"}}
