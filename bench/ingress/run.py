"""Ingress benchmark: the real ingress against a bare FastAPI HMAC-only route, side by side.

    uv run python bench/ingress/run.py [--seconds 10] [--rounds 2]

Needs `wrk` (Debian: apt-get install wrk) and the local PostgreSQL and RabbitMQ
(scripts/infra.sh up). Creates its own database and vhost, removes them after. Both servers run
as one uvicorn process each (same options). Every request carries a signed WhatsApp text webhook
with a message id never sent before, so the ingress publishes (and waits for the broker's
confirm of) one event per request; at the end the events in the broker are counted against the
200s the ingress gave. Prints requests/s at saturation (64 connections) and p50/p99 latency at
a fixed 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
from tistis_common.admin import load_tenant
from tistis_common.db import connect
from tistis_common.migrate import migrate
from tistis_common.secrets import DEV_KEY, SecretBox
from tistis_common.settings import Settings

HERE = Path(__file__).parent
SECRET = "bench-meta-secret"
PHONE_NUMBER_ID = "109876543210001"
SLUG = "bench-clinic"
INGRESS_PORT, BARE_PORT = 18081, 18082
QUEUE = "ai-responder.inbound"


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(path, safe="")))


def bodies_file(directory: Path, tag: str, count: int) -> Path:
    """`count` signed webhooks, each with its own wamid: "<hex signature>\\t<json>" lines."""
    path = directory / f"bodies-{tag}.txt"
    now = str(int(time.time()))
    with path.open("w") as out:
        for n in range(count):
            payload = {"object": "whatsapp_business_account", "entry": [{
                "id": "102290129340398", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881",
                                 "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": "María García"}, "wa_id": "5215512345678"}],
                    "messages": [{"from": "5215512345678", "id": f"wamid.bench{tag}{n:08d}",
                                  "timestamp": now, "type": "text",
                                  "text": {"body": "Hola, quiero una cita para limpieza"}}],
                }}]}]}
            body = json.dumps(payload, separators=(",", ":"))
            sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
            out.write(f"{sig}\t{body}\n")
    return path


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), to report CPU per request: the
    figure that stays meaningful when other processes share the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, bodies: Path, seconds: int, connections: int, rate: int = 0) -> dict:
    env = {**os.environ, "BENCH_PATH": f"/api/webhook/whatsapp/{SLUG}",
           "BENCH_BODIES": str(bodies), "BENCH_THREADS": "2", "BENCH_RATE": str(rate)}
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         str(HERE / "post.lua"), f"http://127.0.0.1:{port}"],
        env=env, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": ms("50%"), "p99": ms("99%"), "requests": total,
            "ok": total - (int(non2xx.group(1)) if non2xx else 0),
            "errors": errors.group(1) if errors else "", "raw": out}


async def wait_http(url: str, method: str = "GET") -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                await http.request(method, url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def queue_depth(management_url: str, vhost: str) -> int:
    parts = urlsplit(management_url)
    base = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port or 15672}"))
    async with httpx.AsyncClient(base_url=base, auth=(parts.username, parts.password)) as http:
        answer = await http.get(f"/api/queues/{quote(vhost, safe='')}/{QUEUE}")
        return int(answer.json().get("messages", 0))


async def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/ingress needs wrk (Debian/Ubuntu: apt-get install wrk)")
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    base = Settings()
    name = f"tistis_bench_{uuid.uuid4().hex[:8]}"
    mgmt = urlsplit(base.rabbitmq_management_url)
    mgmt_base = urlunsplit(mgmt._replace(netloc=f"{mgmt.hostname}:{mgmt.port or 15672}"))
    auth = (mgmt.username or "guest", mgmt.password or "guest")
    admin = await asyncpg.connect(base.migration_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    owner_url = with_path(base.migration_database_url, name)
    app_url = with_path(base.database_url, name)
    amqp_url = with_path(base.rabbitmq_url, name)
    async with httpx.AsyncClient(base_url=mgmt_base, auth=auth) as http:
        (await http.put(f"/api/vhosts/{name}")).raise_for_status()
        (await http.put(f"/api/permissions/{name}/{urlsplit(base.rabbitmq_url).username or 'guest'}",
                        json={"configure": ".*", "write": ".*", "read": ".*"})).raise_for_status()
    procs: list[subprocess.Popen] = []
    try:
        await migrate(owner_url)
        conn = await connect(owner_url)
        await load_tenant(conn, {
            "tenant": {"slug": SLUG, "name": "Bench", "timezone": "America/Mexico_City"},
            "connections": [{"channel": "whatsapp", "platform_account_id": PHONE_NUMBER_ID,
                             "access_token": "bench", "verify_token": "bench"}]},
            SecretBox(os.environ.get("SECRETS_KEYS", DEV_KEY)))
        await conn.close()
        env = {**os.environ, "DATABASE_URL": app_url, "RABBITMQ_URL": amqp_url,
               "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(INGRESS_PORT), "META_APP_SECRET": SECRET,
               "LOG_LEVEL": "WARNING"}
        # The benchmark is sequential by design: nothing else runs on this loop meanwhile.
        procs.append(subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-c", "from tistis_ingress.main import cli; cli()"], env=env))
        procs.append(subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "bare:app", "--host",
             "127.0.0.1", "--port", str(BARE_PORT), "--no-access-log", "--lifespan", "off",
             "--log-level", "warning"], env=env))
        pids = {"ingress": procs[0].pid, "bare": procs[1].pid}
        await wait_http(f"http://127.0.0.1:{INGRESS_PORT}/healthz")
        await wait_http(f"http://127.0.0.1:{BARE_PORT}/docs")

        tmp = Path(tempfile.mkdtemp(prefix="tistis-bench-"))
        # Enough unique ids for the fastest run we expect (3k/s on this machine), per run.
        per_run = max(4000, 4000 * args.seconds)
        results: dict[str, dict[str, list]] = {"ingress": {}, "bare": {}}
        accepted_by_ingress = 0
        runs = [("warmup", 3, 64, 0)] + [
            (f"sat{r}", args.seconds, 64, 0) for r in range(args.rounds)] + [
            (f"rate{r}", args.seconds, 32, args.rate) for r in range(args.rounds)]
        for tag, seconds, connections, rate in runs:
            for target, port in (("bare", BARE_PORT), ("ingress", INGRESS_PORT)):
                bodies = bodies_file(tmp, f"{target}{tag}", per_run)
                pid = pids[target]
                cpu_before = cpu_seconds(pid)
                result = wrk(port, bodies, seconds, connections, rate)
                result["cpu_us"] = 1e6 * (cpu_seconds(pid) - cpu_before) / max(result["requests"], 1)
                bodies.unlink()
                if target == "ingress":
                    accepted_by_ingress += result["ok"]
                if result["ok"] != result["requests"] or result["errors"]:
                    print(f"!! {target} {tag}: {result['requests'] - result['ok']} non-2xx, "
                          f"errors: {result['errors']}", file=sys.stderr)
                kind = "sat" if tag.startswith("sat") else "rate" if tag.startswith("rate") else None
                if kind:
                    results[target].setdefault(kind, []).append(result)
                print(f"  {tag:7} {target:8} {result['rps']:8.0f} req/s  p50 {result['p50']:6.2f} ms"
                      f"  p99 {result['p99']:6.2f} ms  {result['cpu_us']:5.0f} us CPU/req"
                      f"  ({result['requests']} requests)", flush=True)

        depth = 0
        for _ in range(60):  # management statistics lag a few seconds
            depth = await queue_depth(base.rabbitmq_management_url, name)
            if depth >= accepted_by_ingress:
                break
            await asyncio.sleep(1)

        def med(target: str, kind: str, key: str) -> float:
            return statistics.median(r[key] for r in results[target][kind])

        bare_rps, ingress_rps = med("bare", "sat", "rps"), med("ingress", "sat", "rps")
        print()
        print(f"{'':34}{'bare HMAC route':>18}{'ingress':>12}")
        print(f"{'req/s at saturation (64 conn)':34}{bare_rps:>18.0f}{ingress_rps:>12.0f}"
              f"   ingress/bare = {100 * ingress_rps / bare_rps:.0f}%")
        print(f"{f'p50 at {args.rate} req/s (ms)':34}{med('bare', 'rate', 'p50'):>18.2f}"
              f"{med('ingress', 'rate', 'p50'):>12.2f}")
        print(f"{f'p99 at {args.rate} req/s (ms)':34}{med('bare', 'rate', 'p99'):>18.2f}"
              f"{med('ingress', 'rate', 'p99'):>12.2f}")
        print(f"{'server CPU per request (us)':34}{med('bare', 'sat', 'cpu_us'):>18.0f}"
              f"{med('ingress', 'sat', 'cpu_us'):>12.0f}   bare/ingress = "
              f"{100 * med('bare', 'sat', 'cpu_us') / med('ingress', 'sat', 'cpu_us'):.0f}%")
        print(f"{'achieved rate (req/s)':34}{med('bare', 'rate', 'rps'):>18.0f}"
              f"{med('ingress', 'rate', 'rps'):>12.0f}")
        print(f"ingress 200s: {accepted_by_ingress}; events in {QUEUE}: {depth} "
              f"({'every 200 confirmed' if depth >= accepted_by_ingress else 'MISSING EVENTS'}; "
              f"the surplus are requests wrk cut off at the end of a run, confirmed but not counted)")
        print(f"load average before/after: {os.getloadavg()}  cpus: {os.cpu_count()}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        async with httpx.AsyncClient(base_url=mgmt_base, auth=auth) as http:
            await http.delete(f"/api/vhosts/{name}")
        admin = await asyncpg.connect(base.migration_database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
