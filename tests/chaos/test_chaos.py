"""Nothing lost, nothing doubled: a load of signed webhooks from many tenants, channels and
patients (with duplicates) flows through the whole platform while its parts are broken.

`make test` runs each scenario in a short form; `make test-chaos` (TISTIS_CHAOS=full) runs them
with a few thousand webhooks each, every scenario with three seeds (the load's patients, channels,
duplicates and timing); the short form runs the broker restart with two seeds, the others with
one. The table of the run is printed at the end (`conftest.py`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from .cluster import SERVICES, Cluster
from .conftest import Row
from .load import build, drive
from .verify import dead_letter_count, settle_and_check

FULL = os.environ.get("TISTIS_CHAOS") == "full"
TENANTS = 4
PATIENTS_PER_TENANT = 500 if FULL else 15  # per scenario
RATE = 60.0 if FULL else 8.0  # webhooks per second offered (the load spans the disruption)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800 if FULL else 300)]


def seeds(first: int, short: int = 1) -> list[int]:
    return [first + i for i in range(3 if FULL else short)]


@pytest.fixture(scope="module")
async def cluster():
    c = Cluster()
    await c.prepare()
    c.extra_env = {"AI_DEBOUNCE_SECONDS": "0.3"}
    c.tenants = await c.add_tenants(TENANTS)  # type: ignore[attr-defined]
    c.start_all()
    yield c
    c.stop_all()
    await c.drop()


async def scenario(cluster: Cluster, seed: int, disrupt: Callable[[], Awaitable[None]],
                   rows: list[Row], name: str) -> None:
    started = time.monotonic()
    dead_before = dead_letter_count(cluster)
    hooks = build(cluster.tenants, PATIENTS_PER_TENANT, seed=seed)  # type: ignore[attr-defined]
    load = asyncio.create_task(drive(cluster.ingress_url, hooks, rate=RATE, seed=seed))
    await asyncio.sleep(len(hooks) / RATE / 3)  # a third of the way in
    await disrupt()
    stats = await load
    outcome = await settle_and_check(cluster, hooks)
    print(f"\nchaos seed={seed}: webhooks={len(hooks)} sent={stats.sent} "
          f"duplicates={stats.duplicates_sent} refused={stats.refused} "
          f"transport_errors={stats.transport_errors} accepted={outcome.accepted} "
          f"stored_once={outcome.stored_once} replied_once={outcome.replied_once} "
          f"parked_unknown={len(outcome.parked_unknown)} "
          f"dead_letters={outcome.dead_letters} settle={outcome.settle_seconds:.1f}s")
    rows.append(Row(name, seed, outcome.accepted, outcome.stored_once, outcome.replied_once,
                    len(outcome.parked_unknown), sum(outcome.dead_letters.values()) - dead_before,
                    time.monotonic() - started,
                    stats.accepted == len(hooks) and not outcome.problems()))
    assert stats.accepted == len(hooks), f"webhooks never accepted: {len(hooks) - stats.accepted}"
    assert outcome.problems() == []


def sandbox_fault(cluster: Cluster, target: str, **fault) -> None:
    httpx.post(f"{cluster.sandbox_url}/_sandbox/faults/{target}", json=fault).raise_for_status()


class TestChaos:
    @pytest.mark.parametrize("seed", seeds(101, short=2))
    async def test_rabbitmq_restart_loses_and_doubles_nothing(self, cluster, seed, chaos_rows):
        await scenario(cluster, seed, lambda: asyncio.to_thread(cluster.restart_rabbitmq, 2.0),
                       chaos_rows, "RabbitMQ restart")

    @pytest.mark.parametrize("seed", seeds(202))
    async def test_kill_9_of_each_service_loses_and_doubles_nothing(self, cluster, seed,
                                                                     chaos_rows):
        async def kill_each():
            for name in SERVICES:
                await asyncio.to_thread(cluster.restart, name)
                await asyncio.sleep(0.5)

        await scenario(cluster, seed, kill_each, chaos_rows, "kill -9 of each service")

    @pytest.mark.parametrize("seed", seeds(303))
    async def test_postgres_restart_loses_and_doubles_nothing(self, cluster, seed, chaos_rows):
        await scenario(cluster, seed, lambda: asyncio.to_thread(cluster.restart_postgres, 2.0),
                       chaos_rows, "PostgreSQL restart")

    @pytest.mark.parametrize("seed", seeds(404))
    async def test_failing_and_slow_platforms_and_model_recover(self, cluster, seed, chaos_rows):
        async def faults():
            for target in ("anthropic", "whatsapp", "graph", "tiktok"):
                sandbox_fault(cluster, target, mode="error", status=500)
            await asyncio.sleep(3)
            for target in ("anthropic", "whatsapp", "graph", "tiktok"):
                sandbox_fault(cluster, target, mode="slow", delay=0.5)
            await asyncio.sleep(3)
            for target in ("anthropic", "whatsapp", "graph", "tiktok"):
                sandbox_fault(cluster, target, mode="ok")

        await scenario(cluster, seed, faults, chaos_rows, "platforms and model failing")
