"""The five services start as real processes (as `make run` starts them), answer their probes and
metrics, log JSON, and stop cleanly on SIGTERM."""

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
                await wait_healthy(http, port)
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert metrics.status_code == 200
                assert "tistis_events_published_total" in metrics.text, name
        for proc, _ in processes.values():
            proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in processes.items():
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{out[-2000:]}"
            events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
            assert "service.started" in events and "service.stopped" in events, (name, out[-2000:])
