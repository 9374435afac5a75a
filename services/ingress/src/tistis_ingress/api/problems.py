"""Errors as RFC 9457 problem details (`application/problem+json`), for every route of the app
that is not a webhook answer of its own: the operator API, the legacy callback, the realtime
feed (and the inbox, which installs the same handlers).

Three handlers replace FastAPI's defaults:
  - request validation -> 422 with `errors` (where, which rule, the rule's message); never the
    input itself: FastAPI's default echoes it, and a lone surrogate or a NaN in it cannot be
    encoded, so bad input became a 500;
  - HTTP errors (ours and Starlette's 404/405) -> the same status with our `detail`;
  - the database unreachable -> 503 (try again); anything else unexpected -> 500 with a fixed
    text; the exception goes to the log, never out.
Every string that came from the request is made encodable and cut short before it is answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from tistis_common import metrics
from tistis_common.db import DATABASE_AWAY
from tistis_common.logging import get_logger

log = get_logger(__name__)

MEDIA_TYPE = "application/problem+json"
MAX_ERRORS = 20
MAX_TEXT = 200


class FieldError(BaseModel):
    loc: list[str | int]
    type: str
    msg: str


class Problem(BaseModel):
    """RFC 9457: `type` is about:blank (the status says it all), `title` the status phrase."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        # allow_nan=False: a non-finite number must never reach the wire (it is not JSON).
        return json.dumps(content, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()


_DESCRIPTIONS = {
    400: "a malformed parameter (a cursor)",
    401: "missing, wrong or revoked bearer credential",
    403: "authenticated, but not allowed to do this (or a file link that is invalid or has expired)",
    404: "no such object in the caller's tenant",
    413: "the file is larger than the platforms take",
    415: "not a file type that can be sent",
    409: "the request conflicts with the object's state",
    422: "the request does not follow the schema",
    429: "too many requests or login attempts; see Retry-After",
    503: "the broker or the database did not answer; try again",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the refusals a route can answer (the fuzzer holds us to them)."""
    return {code: {"model": Problem, "description": _DESCRIPTIONS[code]} for code in codes}


def safe_text(value: object) -> str:
    """Encodable (a lone surrogate becomes '?') and short: fit to answer whatever it was."""
    return str(value).encode("utf-8", "replace").decode("utf-8")[:MAX_TEXT]


def problem(status: int, detail: str | None = None, *, errors: list[FieldError] | None = None,
            headers: Mapping[str, str] | None = None) -> ProblemResponse:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = Problem(title=title, status=status, detail=safe_text(detail) if detail else None,
                   errors=errors)
    return ProblemResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    """Where and which rule, never the value (`input`, `ctx` and `url` are left out)."""
    found = []
    for error in exc.errors()[:MAX_ERRORS]:
        loc = [part if isinstance(part, int) else safe_text(part) for part in error.get("loc", ())]
        found.append(FieldError(loc=loc, type=safe_text(error.get("type", "invalid")),
                                msg=safe_text(error.get("msg", "invalid"))))
    return found


def _route(request: Request) -> str:
    path = request.url.path
    if path == "/api/webhook":
        return "callback"
    if path.startswith("/api/v1/events"):
        return "realtime"
    return "operator" if path.startswith("/api/v1/") else "other"


async def _on_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    metrics.API_REQUESTS.labels(_route(request), "invalid").inc()
    return problem(422, "the request does not follow the schema", errors=field_errors(exc))


async def _on_http(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)



async def _on_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    route = _route(request)
    if isinstance(exc, DATABASE_AWAY):
        log.error("api.unavailable", route=route, method=request.method, error=type(exc).__name__)
        metrics.API_REQUESTS.labels(route, "unavailable").inc()
        return problem(503, "the database did not answer, try again")
    log.error("api.unexpected_error", route=route, method=request.method, error=type(exc).__name__)
    metrics.API_REQUESTS.labels(route, "error").inc()
    return problem(500, "internal error")


def install(app: FastAPI) -> None:
    """Our handlers, and an OpenAPI document that says so: every refusal documented with the
    `Problem` schema (ours, and FastAPI's automatic 422) is served as application/problem+json."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_openapi(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_REFS = {"#/components/schemas/Problem", "#/components/schemas/HTTPValidationError"}


def _problem_openapi(document: dict[str, Any]) -> dict[str, Any]:
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") in _REFS:
                    response["content"] = {MEDIA_TYPE: {"schema": problem_ref}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(Problem.model_json_schema(ref_template="#/components/schemas/{model}")
                   .pop("$defs", {}))
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["Problem"].pop("$defs", None)
    return document
