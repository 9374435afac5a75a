"""schemathesis against the operator API and the callback WITH valid credentials, so that
generated ids, params and bodies reach validation, the database and the broker: no 500, and
only documented status codes. (The ingress's own fuzz test covers them as an outsider.)"""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from .conftest import CRON_SECRET

HYPOTHESIS = hypothesis_settings(max_examples=25, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck), derandomize=True)
# The inbox's 35 routes share one authentication and a few shapes: fewer examples each keeps
# the run short (tests/inbox covers their behaviour).
INBOX = hypothesis_settings(HYPOTHESIS, max_examples=5)
STAFF_PATHS = ("/api/v1/inbox", "/api/v1/staff", "/api/v1/auth", "/api/v1/me")


def fuzz(base_url: str, key: str) -> int:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        path = operation.path
        if path == "/api/webhook":
            auth = f"Bearer {CRON_SECRET}"
        elif path.startswith("/api/v1/") and path != "/api/v1/events/stream":
            auth = f"Bearer {key}"
        else:
            continue

        run_with(operation, base_url, auth, INBOX if path.startswith(STAFF_PATHS) else HYPOTHESIS)
        ran += 1
    return ran


def run_with(operation, base_url: str, auth: str, examples=HYPOTHESIS) -> None:
    @given(case=operation.as_strategy())
    @examples
    def run(case):
        response = case.call(base_url=base_url, headers={"Authorization": auth})
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])

    run()


async def test_authenticated_fuzzing_finds_no_server_error(ingress, keyed_tenant):
    t = await keyed_tenant()
    base_url = str(ingress.base_url).rstrip("/")
    assert await asyncio.to_thread(fuzz, base_url, t.key) == 49  # operator API, inbox, files, outcomes
