"""The five services start as real processes (as `make run` starts them), answer their probes and
metrics, log JSON (their libraries too: uvicorn, aio-pika, asyncpg), give every HTTP request a
request id, and stop cleanly on SIGTERM."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

SERVICES = ["ingress", "ai-responder", "dispatcher", "scorer", "scheduler"]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(settings, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "MIGRATION_DATABASE_URL": settings.migration_database_url,
        "RABBITMQ_URL": settings.rabbitmq_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "SHUTDOWN_GRACE_SECONDS": "5",
    }


@pytest.fixture
async def processes(settings):
    procs = {}
    for name in SERVICES:
        port = free_port()
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on synchronously
            [str(BIN / f"tistis-{name}")], env=service_env(settings, port),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs[name] = (proc, port)
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def wait_healthy(http: httpx.AsyncClient, port: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"service on {port} never became ready")


class TestServicesAsProcesses:
    async def test_all_five_answer_probes_and_stop_cleanly_on_sigterm(self, processes):
        async with httpx.AsyncClient(timeout=5) as http:
            for name, (_proc, port) in processes.items():
                await wait_healthy(http, port, timeout=90)  # five imports at once on a busy machine
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert metrics.status_code == 200
                assert "tistis_events_published_total" in metrics.text, name
                assert 'tistis_build_info{python="' in metrics.text, name
                assert len(metrics.headers["x-request-id"]) == 32, name
            # a refused webhook is logged with the caller's request id, returned in the answer
            ingress = processes["ingress"][1]
            refused = await http.post(f"http://127.0.0.1:{ingress}/api/webhook/whatsapp/no-such-clinic",
                                      content=b"{}", headers={"X-Request-ID": "gw-4f2a.7"})
            assert refused.status_code == 404
            assert refused.headers["x-request-id"] == "gw-4f2a.7"
        for proc, _ in processes.values():
            proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in processes.items():
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{out[-2000:]}"
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # JSON, every one
            events = [line["event"] for line in lines]
            assert "service.started" in events and "service.stopped" in events, (name, out[-2000:])
            # uvicorn's own records, through the same pipeline, with the service bound
            uvicorn = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
            assert uvicorn and all(line["service"] == name for line in uvicorn), (name, out[-2000:])
            if name == "ingress":
                [refused] = [line for line in lines if line["event"] == "webhook.refused"]
                assert refused["request_id"] == "gw-4f2a.7"
