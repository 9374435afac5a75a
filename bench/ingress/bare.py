"""The baseline: a bare FastAPI route that only checks the Meta HMAC over the raw body and
answers. Same server (uvicorn, one process, same options) as the ingress in the benchmark."""

from __future__ import annotations

import hashlib
import hmac
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

SECRET = os.environ.get("META_APP_SECRET", "bench-secret").encode()
app = FastAPI()


@app.post("/api/webhook/{channel}/{tenant_slug}")
async def receive(channel: str, tenant_slug: str, request: Request) -> Response:
    body = await request.body()
    header = request.headers.get("x-hub-signature-256", "")
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header[7:].encode(), expected.encode()):
        return JSONResponse({"status": "bad_signature"}, status_code=401)
    return JSONResponse({"status": "accepted", "events": 1})
