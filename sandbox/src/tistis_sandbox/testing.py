"""Paths and headers the sandbox's own tests (and the services' tests) send to the fakes."""

from __future__ import annotations

GRAPH_VERSION = "v21.0"
PHONE_NUMBER_ID = "100000000000001"
PAGE_ID = "100000000000101"
WA_PATH = f"/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages"
PAGE_PATH = f"/{GRAPH_VERSION}/{PAGE_ID}/messages"
TIKTOK_PATH = "/open_api/v1.3/business/message/send/"
BEARER = {"Authorization": "Bearer sandbox-token"}
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-sandbox", "anthropic-version": "2023-06-01"}
