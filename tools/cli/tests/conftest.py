"""The `tistis` command run in-process (typer's CliRunner, in a worker thread so that its own
asyncio.run works) with the environment pointing at the session's database and vhost, and a
local stand-in for the platforms' token checks (Graph API and TikTok Business API)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tistis_cli.main import app
from tistis_common.broker import connect
from tistis_common.testing.plugin import temporary_vhost
from tistis_common.topology import declare_topology
from typer.testing import CliRunner


def platform_app() -> FastAPI:
    """Answers like the platforms do: a token starting with `revoked` is refused."""
    fake = FastAPI()

    @fake.get("/open_api/{version}/business/get/")
    async def tiktok_business(request: Request):
        if request.headers.get("access-token", "").startswith("revoked"):
            return {"code": 40105, "message": "Access token is incorrect or has been revoked.",
                    "request_id": "x", "data": {}}
        return {"code": 0, "message": "OK", "data": {"username": "clinic"}}

    @fake.get("/{version}/{account_id}")
    async def graph_node(account_id: str, request: Request):
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token.startswith("revoked"):
            error = {"message": "Invalid OAuth access token - Cannot parse access token",
                     "type": "OAuthException", "code": 190, "fbtrace_id": "A"}
            return JSONResponse({"error": error}, status_code=400)
        return {"id": account_id}

    return fake


@asynccontextmanager
async def serve(fake: FastAPI) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(fake, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # it failed to start: say why
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def platforms() -> AsyncIterator[str]:
    async with serve(platform_app()) as url:
        yield url


@pytest.fixture(scope="session")
async def topology(settings) -> None:
    connection = await connect(settings.rabbitmq_url)
    channel = await connection.channel()
    await declare_topology(channel, settings.retry_delays)
    await connection.close()


@pytest.fixture
def tistis(settings, platforms, topology):
    """`await tistis("dlq", "list")` -> click Result (exit_code, output)."""

    env = {
        "DATABASE_URL": settings.database_url,
        "MIGRATION_DATABASE_URL": settings.migration_database_url,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "RABBITMQ_MANAGEMENT_URL": settings.rabbitmq_management_url,
        "RETRY_DELAYS": json.dumps(settings.retry_delays),
        "GRAPH_API_BASE_URL": platforms,
        "TIKTOK_API_BASE_URL": platforms,
    }

    async def run(*args: str, input: str | None = None, **extra_env: str):
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, app, list(args), input=input,
                                       env={**env, **extra_env}, catch_exceptions=False)

    run.env = env  # type: ignore[attr-defined]
    return run


def json_of(output: str):
    """The JSON document a `--json` command printed. Other services of the session run in this
    process and may log to the same stdout meanwhile; the document starts and ends at column 0."""
    found = re.search(r"^[\[{].*?^[\]}]$", output, re.M | re.S)
    assert found, output
    return json.loads(found.group(0))


@pytest.fixture
async def private_vhost(settings) -> AsyncIterator[str]:
    """A vhost of this test alone (queue depths that no other test's consumer can change)."""
    async with temporary_vhost(settings.rabbitmq_management_url, settings.rabbitmq_url,
                               "tistis_cli") as url:
        connection = await connect(url)
        channel = await connection.channel()
        await declare_topology(channel, settings.retry_delays)
        await connection.close()
        yield url
