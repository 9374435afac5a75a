"""The whole platform as real processes on servers of its own, for the chaos tests and the
pipeline benchmark: a second RabbitMQ and PostgreSQL (other ports, so they can be restarted
without touching anything else), the sandbox of fake platforms, and the five services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from tistis_common.admin import load_tenant
from tistis_common.db import connect
from tistis_common.migrate import migrate
from tistis_common.secrets import DEV_KEY, SecretBox

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ("ingress", "ai-responder", "dispatcher", "scorer", "scheduler")
APP_SECRET = "chaos-app-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Ports:
    # Other values let a second run (make test-rabbitmq4) use servers of its own.
    pg: int = field(default_factory=lambda: _port("TISTIS_CHAOS_PG_PORT", 5452))
    amqp: int = field(default_factory=lambda: _port("TISTIS_CHAOS_AMQP_PORT", 5692))
    mgmt: int = field(default_factory=lambda: _port("TISTIS_CHAOS_MGMT_PORT", 15692))
    # HTTP ports are picked free, so that two runs on one machine do not collide.
    http: dict[str, int] = field(default_factory=dict)

    def infra_env(self) -> dict[str, str]:
        return {"TISTIS_PG_PORT": str(self.pg), "TISTIS_AMQP_PORT": str(self.amqp),
                "TISTIS_MGMT_PORT": str(self.mgmt)}


@dataclass
class ChaosTenant:
    id: uuid.UUID
    slug: str
    accounts: dict[str, str]  # channel -> platform account id


@dataclass
class Cluster:
    ports: Ports = field(default_factory=Ports)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, IO[str]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: ROOT / ".run" / "chaos")

    # -- infrastructure -----------------------------------------------------------------
    def infra(self, *args: str) -> None:
        subprocess.run([str(ROOT / "scripts" / "infra.sh"), *args], check=True,
                       env={**os.environ, **self.ports.infra_env()}, capture_output=True)

    @property
    def db_name(self) -> str:
        return f"chaos_{self.run_id}"

    @property
    def owner_url(self) -> str:
        return f"postgresql://tistis:tistis@127.0.0.1:{self.ports.pg}/{self.db_name}"

    @property
    def superuser_url(self) -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.ports.pg}/{self.db_name}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports.amqp}/{self.db_name}"

    @property
    def mgmt(self) -> httpx.Client:
        # Plain HTTP on loopback: no TLS context (building one loads the CA bundle, tens of ms
        # of CPU per client, and the benchmark asks every second).
        return httpx.Client(base_url=f"http://127.0.0.1:{self.ports.mgmt}", auth=("guest", "guest"),
                            timeout=10, verify=False)

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.port_of('ingress')}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.port_of('sandbox')}"

    async def prepare(self) -> None:
        self.infra("up")
        admin = await asyncpg.connect(f"postgresql://tistis:tistis@127.0.0.1:{self.ports.pg}/tistis")
        await admin.execute(f'CREATE DATABASE "{self.db_name}"')
        await admin.close()
        await migrate(self.owner_url)
        with self.mgmt as http:
            http.put(f"/api/vhosts/{self.db_name}").raise_for_status()
            http.put(f"/api/permissions/{self.db_name}/guest",
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    async def add_tenants(self, count: int) -> list[ChaosTenant]:
        tenants = []
        conn = await connect(self.owner_url)
        try:
            for i in range(count):
                n = f"{self.run_id}{i:03d}"
                accounts = {"whatsapp": f"55{i:03d}{int(self.run_id, 16) % 10**9:09d}",
                            "facebook": f"66{i:03d}{int(self.run_id, 16) % 10**9:09d}",
                            "instagram": f"1784{i:03d}{int(self.run_id, 16) % 10**9:09d}",
                            "tiktok": f"tt-biz-{n}"}
                doc = {
                    "tenant": {"slug": f"chaos-{n}", "name": f"Chaos clinic {i}"},
                    "connections": [{"channel": ch, "platform_account_id": acc,
                                     "access_token": f"token-{ch}-{n}", "verify_token": "v"}
                                    for ch, acc in accounts.items()],
                    # Always open: the test is about delivery, not business hours.
                    "ai_context": {"escalation_keywords": ["queja"],
                                   "auto_escalate_after_messages": 1000,
                                   "business_hours": {"timezone": "UTC", **{
                                       d: [["00:00", "23:59"]] for d in
                                       ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}},
                    "faqs": [{"question": "¿Horario?", "answer": "9 a 18 h", "keywords": ["horario"]}],
                }
                tenant_id = await load_tenant(conn, doc, SecretBox(os.environ.get("SECRETS_KEYS", DEV_KEY)))
                tenants.append(ChaosTenant(tenant_id, doc["tenant"]["slug"], accounts))
        finally:
            await conn.close()
        return tenants

    # -- processes -----------------------------------------------------------------------
    def service_env(self, name: str, port: int) -> dict[str, str]:
        base = self.sandbox_url
        return {
            **os.environ,
            "SERVICE_NAME": name,
            "DATABASE_URL": f"postgresql://tistis_app:tistis_app@127.0.0.1:{self.ports.pg}/{self.db_name}",
            "MIGRATION_DATABASE_URL": self.owner_url,
            "RABBITMQ_URL": self.amqp_url,
            "RABBITMQ_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{self.ports.mgmt}",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "GRAPH_API_BASE_URL": base,
            "TIKTOK_API_BASE_URL": base,
            "ANTHROPIC_BASE_URL": base,
            "ANTHROPIC_API_KEY": "sk-ant-sandbox",
            "META_APP_SECRET": APP_SECRET,
            "TIKTOK_CLIENT_SECRET": APP_SECRET,
            "RETRY_DELAYS": "[0.5, 1, 2, 4, 8]",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "LOG_LEVEL": "INFO",
            **self.extra_env,
        }

    def port_of(self, name: str) -> int:
        return self.ports.http.setdefault(name, free_port())

    def start(self, name: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.logs.get(name) or open(self.log_dir / f"{self.run_id}-{name}.log", "a")
        self.logs[name] = log
        port = self.port_of(name)
        cmd = ([str(BIN / "tistis-sandbox"), "serve", "--port", str(port),
                "--log-level", "warning"] if name == "sandbox"
               else [str(BIN / f"tistis-{name}")])
        self.procs[name] = subprocess.Popen(cmd, env=self.service_env(name, port), stdout=log,
                                            stderr=subprocess.STDOUT)

    def start_replica(self, name: str) -> str:
        """One more process of a consumer service (its own HTTP port), for scaling figures."""
        replica = f"{name}#{sum(1 for k in self.procs if k.startswith(name))}"
        port = self.port_of(replica)
        log = open(self.log_dir / f"{self.run_id}-{replica}.log", "a")
        self.logs[replica] = log
        self.procs[replica] = subprocess.Popen([str(BIN / f"tistis-{name}")],
                                               env=self.service_env(name, port), stdout=log,
                                               stderr=subprocess.STDOUT)
        return replica

    def wait_ready(self, name: str, timeout: float = 30) -> None:
        path = "/_sandbox/requests" if name == "sandbox" else "/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port_of(name)}{path}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout}s")

    def start_all(self) -> None:
        for name in ("sandbox", *SERVICES):
            self.start(name)
        for name in ("sandbox", *SERVICES):
            # Six Python processes start at once: on a busy 2-core machine that takes a while.
            self.wait_ready(name, timeout=90)

    def kill9(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def restart(self, name: str, hard: bool = True) -> None:
        if hard:
            self.kill9(name)
        else:
            self.procs[name].terminate()
            self.procs[name].wait(timeout=30)
        self.start(name)
        self.wait_ready(name, timeout=60)

    def restart_rabbitmq(self, down_for: float = 1.0) -> None:
        self.infra("down", "rabbitmq")
        time.sleep(down_for)
        self.infra("up", "rabbitmq")

    def restart_postgres(self, down_for: float = 1.0) -> None:
        self.infra("down", "postgres")
        time.sleep(down_for)
        self.infra("up", "postgres")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in self.logs.values():
            log.close()

    async def drop(self) -> None:
        with self.mgmt as http:
            http.delete(f"/api/vhosts/{self.db_name}")
        admin = await asyncpg.connect(f"postgresql://tistis:tistis@127.0.0.1:{self.ports.pg}/tistis")
        await admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        await admin.close()

    # -- observations ----------------------------------------------------------------------
    def queues(self) -> dict[str, dict]:
        with self.mgmt as http:
            # Only the counts: the benchmark asks every second.
            rows = http.get(f"/api/queues/{self.db_name}", params={
                "columns": "name,messages_ready,messages_unacknowledged"}).json()
        return {q["name"]: {"ready": q.get("messages_ready", 0),
                            "unacked": q.get("messages_unacknowledged", 0)} for q in rows}
