"""Pipeline benchmark: webhook -> ingress -> RabbitMQ -> ai-responder (the sandbox's fake
Anthropic API answering after `--model-seconds`) -> dispatcher -> fake platform, on this
machine, one replica of each service at its default settings (the reply debounce included).

Prints, per offered rate of new patients: replies delivered/s; p50/p95/p99 of the wait from the
webhook's 200 to the reply reaching the fake platform; the same minus the model's time and the
debounce (the platform's own overhead); the peak of conversations in flight (replies being
composed plus replies due and waiting for a slot) and of the ai-responder's database
connections (`pg_stat_activity`, application_name `ai-responder`); the replies queue at its
peak and at the end (no growth once the model answers); the CPU per reply of each process
(`/proc/<pid>/stat`) and where the overhead went (`stages`). Then a round with an instant model,
the debounce 0 and prefetch 64 (the settings of the earlier figures), for the CPU cost per
message of each process. It stops by itself: each round waits for its replies at most
`--settle` seconds after the load ends.

    uv run python bench/pipeline/run.py [--rates 20,50] [--seconds 20] [--model-seconds 2]
    make bench-pipeline   # the targets: 50/s for 60 s with a 2 s model, 50/s with a 10 s model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tistis_common.settings import Settings

from tests.chaos.cluster import SERVICES, Cluster
from tests.chaos.load import build, drive


def default(setting: str) -> Any:
    """A setting's default as the code declares it (not as this shell's environment sets it)."""
    declared = Settings.model_fields[setting]
    if declared.default_factory is not None:
        return declared.default_factory()  # type: ignore[call-arg]
    return declared.default


DEFAULT_DEBOUNCE = default("ai_debounce_seconds")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


@dataclass
class Peaks:
    in_flight: float = 0  # replies being composed (the ai-responder's gauge)
    waiting: float = 0  # in flight + due in the replies queue + in their debounce
    connections: int = 0  # the ai-responder's database connections
    replies_ready: int = 0  # due replies waiting for a consumer slot
    samples: list[tuple[float, int]] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)  # peak ready messages per queue


async def sample(cluster: Cluster, peaks: Peaks, stop: asyncio.Event) -> None:
    """Every quarter second the ai-responder's connections, every second its in-flight gauge
    (a scrape of /metrics costs the measured process CPU) and the replies queues (the
    broker's management API is not cheap)."""
    conn = await asyncpg.connect(cluster.superuser_url)
    metrics_url = f"http://127.0.0.1:{cluster.port_of('ai-responder')}/metrics"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                peaks.connections = max(peaks.connections, int(await conn.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE application_name = 'ai-responder' AND datname = $1""",
                    cluster.db_name)))
                if not peaks.samples or time.monotonic() - peaks.samples[-1][0] >= 1.0:
                    in_flight = 0.0
                    try:
                        for line in (await http.get(metrics_url)).text.splitlines():
                            if line.startswith("tistis_ai_replies_in_flight "):
                                in_flight = float(line.split()[1])
                    except httpx.HTTPError:
                        pass
                    peaks.in_flight = max(peaks.in_flight, in_flight)
                    queues = await asyncio.to_thread(cluster.queues)
                    for name, depth in queues.items():
                        peaks.backlog[name] = max(peaks.backlog.get(name, 0), depth["ready"])
                    ready = queues.get("ai-responder.replies", {"ready": 0})["ready"]
                    debouncing = queues.get("ai-responder.debounce", {"ready": 0})["ready"]
                    peaks.replies_ready = max(peaks.replies_ready, ready)
                    peaks.waiting = max(peaks.waiting, in_flight + ready + debouncing)
                    peaks.samples.append((time.monotonic(), ready))
                try:
                    await asyncio.wait_for(stop.wait(), timeout=0.25)
                except TimeoutError:
                    pass
    finally:
        await conn.close()


async def stages(cluster: Cluster, arrived: dict[str, float], accepted: dict[str, float],
                 model_seconds: float, debounce: float) -> dict[str, list[float]]:
    """Where each reply's wait went, from the rows' own times (`created_at` of the patient
    message and of the reply, the reply's `latency_ms`): the webhook's 200 to the stored
    message (ingress, broker, store); the stored message to the model's call, beyond the
    debounce (the delay queue, the replies queue, the claim; and the wait to store the reply,
    which the row's times cannot tell apart); the model's call beyond its own time (the SDK,
    the event loop); the stored reply to the fake platform (publish, dispatcher, send)."""
    conn = await asyncpg.connect(cluster.superuser_url)
    try:
        rows = await conn.fetch(
            """SELECT l.platform_user_id AS recipient,
                      extract(epoch FROM p.created_at) AS stored,
                      extract(epoch FROM r.created_at) AS replied, r.latency_ms
                 FROM conversations c JOIN leads l ON l.id = c.lead_id
                 JOIN LATERAL (SELECT created_at FROM messages
                               WHERE conversation_id = c.id AND sender_type = 'lead'
                               ORDER BY created_at LIMIT 1) p ON true
                 JOIN LATERAL (SELECT created_at, latency_ms FROM messages
                               WHERE conversation_id = c.id AND sender_type = 'ai'
                               ORDER BY created_at LIMIT 1) r ON true
                WHERE l.platform_user_id = ANY($1::text[])""", list(arrived))
    finally:
        await conn.close()
    out: dict[str, list[float]] = {"ingest": [], "to model": [], "model extra": [],
                                   "to platform": []}
    for r in rows:
        latency = (r["latency_ms"] or 0) / 1000
        model_start = float(r["replied"]) - latency  # stored right after the answer
        out["ingest"].append(float(r["stored"]) - accepted[r["recipient"]])
        out["to model"].append(model_start - float(r["stored"]) - debounce)
        out["model extra"].append(latency - model_seconds)
        out["to platform"].append(arrived[r["recipient"]] - float(r["replied"]))
    return {k: [percentile(v, p) * 1000 for p in (50, 95, 99)] for k, v in out.items() if v}


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    out = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            except (OSError, IndexError, ValueError):
                continue
        out[name] = total
    return out


def process_groups(cluster: Cluster,
                   known: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Our processes: the services, the sandbox, this script, the database's backends serving
    the benchmark's database and the RabbitMQ node on the cluster's port (shared with other
    vhosts: on a busy machine its share includes theirs)."""
    groups = {name: [proc.pid] for name, proc in cluster.procs.items()}
    groups["load generator"] = [os.getpid()]
    groups["postgres"] = list((known or {}).get("postgres", []))
    groups["rabbitmq"] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if (cmdline.startswith("postgres: ") and f" {cluster.db_name} " in cmdline
                    and int(entry.name) not in groups["postgres"]):
                groups["postgres"].append(int(entry.name))
            elif "beam.smp" in cmdline and (
                    f"RABBITMQ_NODE_PORT={cluster.ports.amqp}".encode()
                    in (entry / "environ").read_bytes()):
                groups["rabbitmq"].append(int(entry.name))
        except OSError:
            continue
    return groups


async def measure(cluster: Cluster, rate: float, seconds: float, seed: int, *,
                  model_seconds: float, debounce: float, settle: float,
                  cpu: bool = False) -> dict:
    patients = max(1, int(rate * seconds / len(cluster.tenants)))  # type: ignore[attr-defined]
    hooks = build(cluster.tenants, patients, seed=seed)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(f"{cluster.sandbox_url}/_sandbox/faults/anthropic",
                        json={"mode": "slow", "delay": model_seconds} if model_seconds
                        else {"mode": "ok"})
    wall_offset = time.time() - time.monotonic()
    since = time.time()
    peaks, stop = Peaks(), asyncio.Event()
    # The CPU round measures the pipeline alone: no sampling beside it.
    sampler = asyncio.create_task(sample(cluster, peaks, stop)) if not cpu else None
    groups = process_groups(cluster)
    cpu_before = cpu_seconds(groups)
    stats = await drive(cluster.ingress_url, hooks, concurrency=64, duplicate_ratio=0.0, rate=rate)
    wanted = {h.recipient: h for h in hooks if h.accepted_at}
    deadline = time.monotonic() + settle
    arrived: dict[str, float] = {}
    seen_until = since
    while time.monotonic() < deadline and len(arrived) < len(wanted):
        # Only the platform sends of this round (the sandbox filters), not every model call,
        # and only what is new since the last look: the sandbox also serves the replies still
        # in flight, and listing the whole round every second would slow them down.
        params = {"target": ["whatsapp", "graph", "tiktok"], "since": seen_until}
        async with httpx.AsyncClient(timeout=60) as http:
            rows = (await http.get(f"{cluster.sandbox_url}/_sandbox/requests",
                                   params=params)).json()["requests"]
        for r in rows:  # replies, not the read receipts and typing indicators
            seen_until = max(seen_until, r["time"])
            if (r.get("kind", "message") == "message" and 200 <= r["status"] < 300
                    and r.get("recipient") in wanted):
                arrived.setdefault(r["recipient"], r["time"])
        await asyncio.sleep(1.0)
    # Processes that started during the round (a pool's new database connections) count whole.
    groups = process_groups(cluster, groups)
    cpu_after = cpu_seconds(groups)
    stop.set()
    if sampler is not None:
        await sampler
    waits = [arrived[k] - (wanted[k].accepted_at + wall_offset) for k in arrived]  # type: ignore[operator]
    overhead = [w - model_seconds - debounce for w in waits]
    first = min((h.accepted_at for h in wanted.values()), default=0)  # type: ignore[type-var]
    last = max(arrived.values(), default=0) - wall_offset
    accepted = {k: wanted[k].accepted_at + wall_offset for k in arrived}  # type: ignore[operator]
    breakdown = {} if cpu else await stages(cluster, arrived, accepted, model_seconds, debounce)
    return {
        "stages": breakdown,
        "offered": rate, "sent": len(hooks), "accepted": len(wanted), "delivered": len(arrived),
        "throughput": len(arrived) / max(1e-9, last - first),  # type: ignore[operator]
        "wait": [percentile(waits, p) * 1000 for p in (50, 95, 99)],
        "overhead": [percentile(overhead, p) * 1000 for p in (50, 95, 99)],
        "peaks": peaks, "replies_ready_end": peaks.samples[-1][1] if peaks.samples else 0,
        "cpu_ms": {k: (cpu_after[k] - cpu_before[k]) * 1000 / max(1, len(arrived))
                   for k in cpu_before},
        "ingress_seconds": stats.seconds,
    }


def show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'offered/s':>9} {'sent':>6} {'deliv':>6} {'deliv/s':>8} "
          f"{'wait p50':>9} {'p95':>8} {'p99':>8} {'overhead p50':>13} {'p95':>8} {'p99':>8} "
          f"{'peak in flight':>14} {'peak waiting':>12} {'peak ai db conns':>16} "
          f"{'replies queue peak/end':>22}")
    for r in rows:
        p = r["peaks"]
        w, o = r["wait"], r["overhead"]
        print(f"{r['offered']:>9.0f} {r['sent']:>6} {r['delivered']:>6} {r['throughput']:>8.1f} "
              f"{w[0]:>9.0f} {w[1]:>8.0f} {w[2]:>8.0f} {o[0]:>13.0f} {o[1]:>8.0f} {o[2]:>8.0f} "
              f"{p.in_flight:>14.0f} {p.waiting:>12.0f} {p.connections:>16} "
              f"{p.replies_ready:>15}/{r['replies_ready_end']}")
    print("(ms; overhead = wait - model time - debounce: the platform's own share)")
    for r in rows:
        print(f"{r['offered']:.0f}/s, CPU per reply (ms): " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(r["cpu_ms"].items(), key=lambda kv: -kv[1]))
              + f"; total {sum(r['cpu_ms'].values()):.1f}")
        print(f"{r['offered']:.0f}/s, where the overhead went (p50 / p95 / p99 ms): " + "; ".join(
            f"{k} {v[0]:.0f} / {v[1]:.0f} / {v[2]:.0f}" for k, v in r["stages"].items()))
    for r in rows:
        backlog = sorted(((n, q) for q, n in r["peaks"].backlog.items()
                          if n and q != "ai-responder.debounce"), reverse=True)[:3]
        print(f"{r['offered']:.0f}/s, largest backlogs (peak ready): "
              + (", ".join(f"{q} {n}" for n, q in backlog) or "none"))


def show_cpu(row: dict) -> None:
    print(f"\nCPU per message, instant model, debounce 0, prefetch 64, {row['offered']:.0f}/s "
          f"({row['delivered']} replies, p50 {row['wait'][0]:.0f} ms, p99 {row['wait'][2]:.0f} ms):")
    for name, ms in sorted(row["cpu_ms"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<16} {ms:6.2f} ms")
    print(f"  {'total':<16} {sum(row['cpu_ms'].values()):6.2f} ms")


async def restart_services(cluster: Cluster, env: dict[str, str]) -> None:
    cluster.extra_env = env
    for name in SERVICES:
        proc = cluster.procs[name]
        proc.terminate()
        proc.wait(timeout=30)
        cluster.start(name)
    for name in SERVICES:
        cluster.wait_ready(name, timeout=60)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="20,50", help="new patients per second, per round")
    parser.add_argument("--seconds", type=float, default=20, help="length of each round")
    parser.add_argument("--model-seconds", type=float, default=2.0,
                        help="how long the fake model takes to answer")
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--settle", type=float, default=90,
                        help="how long a round waits for its last replies after the load")
    parser.add_argument("--cpu-rate", type=float, default=100,
                        help="offered rate of the instant-model CPU round (0: skip it)")
    parser.add_argument("--cpu-seconds", type=float, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        type=lambda kv: tuple(kv.split("=", 1)),
                        help="an environment setting for every service, for experiments "
                             "(e.g. AI_TYPING_AFTER_SECONDS=100: no typing indicators)")
    args = parser.parse_args()
    cluster = Cluster()
    await cluster.prepare()
    # Every setting at its default, logging included (INFO: a few JSON lines per reply), and
    # not the chaos suite's short retries and grace.
    cluster.extra_env = {"LOG_LEVEL": default("log_level"),
                         "RETRY_DELAYS": json.dumps(default("retry_delays")),
                         "SHUTDOWN_GRACE_SECONDS": str(default("shutdown_grace_seconds")),
                         **dict(args.set)}  # --set: experiments only
    cluster.tenants = await cluster.add_tenants(args.tenants)  # type: ignore[attr-defined]
    cluster.start_all()
    try:
        rows = []
        for i, rate in enumerate(float(r) for r in args.rates.split(",") if r):
            rows.append(await measure(cluster, rate, args.seconds, seed=1000 + i,
                                      model_seconds=args.model_seconds,
                                      debounce=DEFAULT_DEBOUNCE, settle=args.settle))
        if rows:
            show(f"one replica of each service, default settings, model {args.model_seconds:g} s, "
                 f"debounce {DEFAULT_DEBOUNCE:g} s", rows)
        if args.cpu_rate > 0:
            # The settings of the figures before issue 14, for comparison with them.
            await restart_services(cluster, {**cluster.extra_env, "LOG_LEVEL": "WARNING",
                                             "AI_DEBOUNCE_SECONDS": "0",
                                             "PREFETCH": "64"})
            show_cpu(await measure(cluster, args.cpu_rate, args.cpu_seconds, seed=3000,
                                   model_seconds=0, debounce=0, settle=args.settle, cpu=True))
        print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs")
    finally:
        cluster.stop_all()
        await cluster.drop()


if __name__ == "__main__":
    uvloop.run(main())
