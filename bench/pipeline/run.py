"""Pipeline benchmark: webhook -> ingress -> RabbitMQ -> ai-responder (fake model answering at
once) -> dispatcher -> fake platform, on this machine, at growing offered load.

Prints, per offered rate: messages/s delivered, and p50/p95/p99 of the time from the webhook's
200 to the reply reaching the fake platform. Then the same at one load with more consumer
replicas. Compare with the product guide's design: a cron draining 10 jobs once a minute
(0.17 messages/s, and up to 60 s before a job is even looked at).

    uv run python bench/pipeline/run.py [--rates 50,100,200,300] [--seconds 20] [--no-replicas]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chaos.cluster import Cluster
from tests.chaos.load import build, drive


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def measure(cluster: Cluster, rate: float, seconds: float, seed: int) -> dict[str, float]:
    patients = max(1, int(rate * seconds / len(cluster.tenants)))  # type: ignore[attr-defined]
    hooks = build(cluster.tenants, patients, seed=seed)  # type: ignore[attr-defined]
    wall_offset = time.time() - time.monotonic()
    since = time.time()
    stats = await drive(cluster.ingress_url, hooks, concurrency=64, duplicate_ratio=0.0, rate=rate)
    wanted = {h.recipient: h for h in hooks if h.accepted_at}
    deadline = time.monotonic() + 60
    arrived: dict[str, float] = {}
    while time.monotonic() < deadline and len(arrived) < len(wanted):
        # Only the platform sends of this round (the sandbox filters), not every model call.
        params = {"target": ["whatsapp", "graph", "tiktok"], "since": since}
        async with httpx.AsyncClient(timeout=60) as http:
            rows = (await http.get(f"{cluster.sandbox_url}/_sandbox/requests",
                                   params=params)).json()["requests"]
        for r in rows:
            if 200 <= r["status"] < 300 and r.get("recipient") in wanted:
                arrived.setdefault(r["recipient"], r["time"])
        await asyncio.sleep(0.5)
    latencies = [arrived[k] - (wanted[k].accepted_at + wall_offset) for k in arrived]  # type: ignore[operator]
    first = min((h.accepted_at for h in wanted.values()), default=0)  # type: ignore[type-var]
    last = max(arrived.values(), default=0) - wall_offset
    return {
        "offered": rate, "sent": len(hooks), "delivered": len(arrived),
        "throughput": len(arrived) / max(1e-9, last - first),  # type: ignore[operator]
        "p50": percentile(latencies, 50) * 1000, "p95": percentile(latencies, 95) * 1000,
        "p99": percentile(latencies, 99) * 1000, "ingress_seconds": stats.seconds,
    }


def show(title: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'offered/s':>10} {'sent':>6} {'delivered':>9} {'msg/s':>8} "
          f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['offered']:>10.0f} {r['sent']:>6.0f} {r['delivered']:>9.0f} {r['throughput']:>8.1f} "
              f"{r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,100,200,300")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--no-replicas", action="store_true",
                        help="skip the second round with two replicas (e.g. for a long sustained run)")
    args = parser.parse_args()
    cluster = Cluster()
    await cluster.prepare()
    cluster.extra_env = {"AI_DEBOUNCE_SECONDS": "0", "LOG_LEVEL": "WARNING", "PREFETCH": "64"}
    cluster.tenants = await cluster.add_tenants(args.tenants)  # type: ignore[attr-defined]
    cluster.start_all()
    try:
        rows = []
        for i, rate in enumerate(float(r) for r in args.rates.split(",")):
            rows.append(await measure(cluster, rate, args.seconds, seed=1000 + i))
        show("one replica of each service", rows)
        if args.no_replicas:
            return
        for name in ("ai-responder", "dispatcher"):
            cluster.start_replica(name)  # type: ignore[attr-defined]
        top = float(args.rates.split(",")[-1])
        show("two replicas of ai-responder and dispatcher",
             [await measure(cluster, top, args.seconds, seed=2000)])
        print("\nproduct guide's cron design: 10 jobs per call, once a minute = 0.17 messages/s, "
              "latency up to 60 s before processing starts")
    finally:
        cluster.stop_all()
        await cluster.drop()


if __name__ == "__main__":
    uvloop.run(main())
