"""Input that cannot be stored or encoded, sent to the operator API and the legacy callback:
a lone surrogate (`"\\ud800"` is valid JSON, yet no UTF-8 encoder takes it), NaN and Infinity
(Python's json accepts them, JSON does not), overflowing numbers, NUL. Each is refused with a
4xx problem detail (RFC 9457, https://www.rfc-editor.org/rfc/rfc9457) that neither echoes the
input nor carries exception text; none answers 5xx and none is published."""

from __future__ import annotations

import json

import httpx
import pytest
from tistis_common.testing.plugin import running
from tistis_ingress.main import start as start_ingress

from .test_api_attacks import CRON, api, keyed  # noqa: F401  (api is a fixture)

# JSON text, spliced into bodies as-is: the escapes reach the server as the attacker wrote them.
HOSTILE_VALUES = ['"\\ud800"', '"a\\udfffb"', '"\\u0000"', "NaN", "Infinity", "-Infinity", "1e999",
                  '"\\ud800\\u0000"', '["\\ud800"]', '{"\\ud800": NaN}']
TRACE_WORDS = ("Traceback", "Error:", "ValueError", "UnicodeEncodeError", "surrogates not allowed",
               "line ")


def bodies(template: dict, field: str, key_prefix: str = "") -> list[bytes]:
    """`template` with `field` (its name prefixed by `key_prefix`) set to each hostile value."""
    fields = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in template.items() if k != field]
    return [("{" + ", ".join([*fields, f'"{key_prefix}{field}": {value}']) + "}").encode()
            for value in HOSTILE_VALUES]


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def refused_cleanly(answer) -> bool:
    """4xx, a problem detail in strict JSON, nothing of the input or of an exception in it."""
    text = answer.text
    return (400 <= answer.status_code < 500
            and answer.headers.get("content-type", "").startswith("application/problem+json")
            and strict_json(text).get("status") == answer.status_code
            and "\ufffd" not in text and "\\ud800" not in text.lower() and "\\u0000" not in text
            and not any(word in text for word in TRACE_WORDS))


class TestUnencodableInput:
    async def test_operator_api_refuses_it_with_a_problem_detail(self, api, settings,  # noqa: F811
                                                                 make_tenant, attack):
        _, key, _, conversation = await keyed(settings, make_tenant)
        c = f"/api/v1/conversations/{conversation}"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for path, template, field in ((f"{c}/escalate", {"reason": "x"}, "reason"),
                                      (f"{c}/messages", {"text": "x"}, "text"),
                                      (f"{c}/messages", {"text": "x", "client_message_id": "a"},
                                       "client_message_id"),
                                      (f"{c}/ai-reply", {}, "requested_by")):
            for body in bodies(template, field) + bodies(template, field, "\\ud800"):
                answer = await api.post(path, content=body, headers=headers)
                attack("unencodable input to the operator API", not refused_cleanly(answer))
                assert refused_cleanly(answer), (path, body, answer.status_code, answer.text[:300])

    async def test_legacy_callback_refuses_it_with_a_problem_detail(self, api, settings,  # noqa: F811
                                                                    make_tenant, attack):
        _, _, lead, conversation = await keyed(settings, make_tenant)
        headers = {"Authorization": f"Bearer {CRON}", "Content-Type": "application/json"}
        cases = [
            ({"action": "ai_response", "conversation_id": str(conversation), "content": "x"}, "content"),
            ({"action": "ai_response", "conversation_id": str(conversation), "content": "x"}, "tokens"),
            ({"action": "update_lead_score", "lead_id": str(lead), "score": 5}, "score"),
            ({"action": "update_lead_score", "lead_id": str(lead), "score": 5}, "reason"),
            ({"action": "escalate_conversation", "conversation_id": str(conversation),
              "reason": "x"}, "reason"),
            ({"action": "schedule_appointment", "lead_id": str(lead), "branch_id": str(lead),
              "scheduled_at": "2030-01-01T10:00:00Z"}, "scheduled_at"),
            ({"conversation_id": str(conversation), "content": "x"}, "action"),
        ]
        for template, field in cases:
            for body in bodies(template, field):
                answer = await api.post("/api/webhook", content=body, headers=headers)
                attack("unencodable input to the legacy callback", not refused_cleanly(answer))
                assert refused_cleanly(answer), (body, answer.status_code, answer.text[:300])
            # An unknown key is ignored (n8n sends extras), however hostile: never a 5xx.
            for body in bodies(template, field, "\\ud800"):
                answer = await api.post("/api/webhook", content=body, headers=headers)
                attack("unencodable input to the legacy callback", answer.status_code >= 500)
                assert answer.status_code < 500, (body, answer.status_code, answer.text[:300])

    @pytest.mark.parametrize("query", ["band=%ED%A0%80", "limit=NaN", "limit=Infinity",
                                       "offset=1e999", "band=%00", "limit=" + "9" * 5000])
    async def test_hostile_query_parameters_are_a_problem_detail(self, api, settings,  # noqa: F811
                                                                 make_tenant, attack, query):
        _, key, _, _ = await keyed(settings, make_tenant)
        answer = await api.get(f"/api/v1/leads?{query}", headers={"Authorization": f"Bearer {key}"})
        attack("hostile query parameters", not refused_cleanly(answer))
        assert refused_cleanly(answer), (query, answer.status_code, answer.text[:300])

    async def test_malformed_json_is_a_problem_detail_without_parser_text(self, api, settings,  # noqa: F811
                                                                          make_tenant, attack):
        _, key, _, conversation = await keyed(settings, make_tenant)
        for path, auth in ((f"/api/v1/conversations/{conversation}/escalate", key),
                           ("/api/webhook", CRON)):
            for body in (b"{not json", b'{"reason": "x"', b"\xff\xfe", b"[" * 10_000, b'"\\ud800"',
                         b"[" * 100_000 + b"]" * 100_000,  # valid JSON, deeper than the parser
                         b'{"reason": "x", "score": ' + b"9" * 5000 + b"}",  # over int's limit
                         b'{"reason": "x", "tokens": 1' + b"0" * 400 + b"}"):
                answer = await api.post(path, content=body, headers={
                    "Authorization": f"Bearer {auth}", "Content-Type": "application/json"})
                attack("malformed JSON to the operator API and callback", not refused_cleanly(answer))
                assert refused_cleanly(answer), (path, body[:20], answer.status_code, answer.text[:300])


class TestDatabaseAway:
    async def test_the_database_away_is_a_503_problem_not_a_500(self, settings, make_tenant, attack):
        """Nothing an outsider sends should be a 500; neither is an outage of ours (the pool
        closed under the running ingress stands in for a database gone away)."""
        _, key, lead, conversation = await keyed(settings, make_tenant)
        async with running(start_ingress, settings, cron_secret=CRON) as ingress:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.http_port}",
                                         timeout=10) as http:
                assert ingress.pool is not None
                await ingress.pool.close()
                for method, path, auth, body in (
                        ("GET", "/api/v1/leads", key, None),
                        ("POST", f"/api/v1/conversations/{conversation}/escalate", key, {"reason": "x"}),
                        ("GET", "/api/v1/events/stream", key, None),
                        ("POST", "/api/webhook", CRON,
                         {"action": "update_lead_score", "lead_id": str(lead), "score": 3})):
                    answer = await http.request(method, path, json=body,
                                                headers={"Authorization": f"Bearer {auth}"})
                    wrong = answer.status_code != 503 or not answer.headers.get(
                        "content-type", "").startswith("application/problem+json")
                    attack("database away answered 500 or with exception text", wrong)
                    assert not wrong, (path, answer.status_code, answer.text[:300])
