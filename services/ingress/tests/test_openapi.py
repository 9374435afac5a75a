"""The OpenAPI document describes every route, and a schemathesis run against the running
ingress finds no 500 and no crash: once as an outsider (random slugs and bodies, unsigned),
once signed for a real tenant so that generated bodies reach parsing and normalization."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 40
HYPOTHESIS = hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck), derandomize=True)


async def test_openapi_describes_both_webhook_methods(poster):
    document = (await poster.http.get("/openapi.json")).json()
    operations = document["paths"]["/api/webhook/{channel}/{tenant_slug}"]
    assert set(operations) == {"get", "post"}
    assert set(operations["post"]["responses"]) >= {"200", "400", "401", "403", "404", "413", "503"}
    channel = next(p for p in operations["post"]["parameters"] if p["name"] == "channel")
    assert "$ref" in channel["schema"] or "enum" in channel["schema"]


def fuzz_as_outsider(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @HYPOTHESIS
        def run(case):
            response = case.call(base_url=base_url)
            case.validate_response(response, checks=[
                not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance,
            ])

        run()


def fuzz_signed(base_url: str, slug: str, meta_secret: str, tiktok_secret: str) -> None:
    """Generated JSON bodies, correctly signed, for every channel of a real tenant."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    post = schema["/api/webhook/{channel}/{tenant_slug}"]["POST"]
    with httpx.Client(base_url=base_url) as http:

        @given(case=post.as_strategy())
        @HYPOTHESIS
        def run(case):
            channel = case.path_parameters["channel"]
            body = json.dumps(case.body).encode()
            if channel == "tiktok":
                t = int(time.time())
                s = hmac.new(tiktok_secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
                headers = {"Tiktok-Signature": f"t={t},s={s.hexdigest()}"}
            else:
                s = hmac.new(meta_secret.encode(), body, hashlib.sha256)
                headers = {"X-Hub-Signature-256": f"sha256={s.hexdigest()}"}
            answer = http.post(f"/api/webhook/{channel}/{slug}", content=body,
                               headers={**headers, "Content-Type": "application/json"})
            assert answer.status_code < 500, answer.text
            assert answer.json()["status"] in ("malformed", "ignored", "cross_tenant", "accepted",
                                               "echo", "duplicate", "unknown_account")

        run()


async def test_schemathesis_finds_no_server_error(poster, make_tenant, settings):
    tenant = await make_tenant()
    base_url = str(poster.http.base_url).rstrip("/")

    async def errors() -> list[str]:  # the counters are per process: other tests count too
        text = (await poster.http.get("/metrics")).text
        return [line for line in text.splitlines()
                if 'outcome="error"' in line and not line.startswith("#")]

    before = await errors()
    # The ingress runs on this event loop: drive it from a thread, over real HTTP.
    await asyncio.to_thread(fuzz_as_outsider, base_url)
    await asyncio.to_thread(fuzz_signed, base_url, tenant.slug, settings.meta_app_secret,
                            settings.tiktok_client_secret)
    assert await errors() == before
