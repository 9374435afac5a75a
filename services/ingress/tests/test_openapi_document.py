"""The committed services/ingress/openapi.json is what the code generates (`make openapi`
writes it; nobody edits it by hand), and it describes the inbox with typed responses."""

from __future__ import annotations

import json

from tistis_ingress.openapi import DOCUMENT, render


async def test_the_committed_document_is_in_step_with_the_code():
    assert DOCUMENT.read_text(encoding="utf-8") == await render(), (
        "services/ingress/openapi.json is out of date: run `make openapi` and commit it")


def test_inbox_routes_answer_typed_models():
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    listed = document["paths"]["/api/v1/inbox/conversations"]["get"]["responses"]["200"]
    assert listed["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConversationPage"}
    untyped = [f"{method.upper()} {path}"
               for path, operations in document["paths"].items() if "/inbox" in path
               or "/staff" in path or "/auth" in path
               for method, op in operations.items()
               for code, answer in op["responses"].items()
               if code.startswith("2") and code != "204"
               and answer.get("content", {}).get("application/json", {}).get("schema") in (None, {})]
    assert untyped == []
