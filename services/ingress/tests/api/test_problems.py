"""The problem-detail handlers on an app of their own: an unexpected error is a 500 that says
nothing of the exception; the OpenAPI document names application/problem+json for refusals."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, HTTPException
from tistis_ingress.api import problems


def app_with_problems() -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom", responses=problems.errors(404))
    async def boom(kind: str = "bug") -> dict:
        if kind == "missing":
            raise HTTPException(404, "thing not found", headers={"X-Why": "gone"})
        raise RuntimeError("secret connection string postgresql://u:p@db")

    return app


async def call(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_with_problems(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


class TestProblems:
    async def test_an_unexpected_error_is_a_500_without_exception_text(self):
        answer = await call("/boom")
        assert answer.status_code == 500
        assert answer.headers["content-type"] == problems.MEDIA_TYPE
        assert answer.json() == {"type": "about:blank", "title": "Internal Server Error",
                                 "status": 500, "detail": "internal error"}

    async def test_an_http_error_keeps_its_status_detail_and_headers(self):
        answer = await call("/boom?kind=missing")
        assert (answer.status_code, answer.json()["detail"]) == (404, "thing not found")
        assert answer.headers["x-why"] == "gone"
        assert (await call("/nowhere")).json()["title"] == "Not Found"

    async def test_openapi_documents_refusals_as_problem_json(self):
        document = (await call("/openapi.json")).json()
        responses = document["paths"]["/boom"]["get"]["responses"]
        for status in ("404", "422"):
            assert list(responses[status]["content"]) == [problems.MEDIA_TYPE]
        assert "HTTPValidationError" not in document["components"]["schemas"]
        assert {"Problem", "FieldError"} <= set(document["components"]["schemas"])
