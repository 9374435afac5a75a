"""Consumer lag as an operator sees it: a service samples its queues from the real broker's
management API into `tistis_queue_messages{queue, state}` on its /metrics, and the
`TistisConsumerLagGrowing` rule fires on the series captured here (promtool replays them on its
own clock: the rule's `for: 10m` and `deriv(...[10m])` are too long for a live test).

Columns of GET /api/queues/{vhost}: messages_ready, messages_unacknowledged
(https://www.rabbitmq.com/docs/http-api-reference, "queues").
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tistis_common.events import Channel, InboundMessage
from tistis_common.runtime import Runtime
from tistis_common.testing.plugin import eventually, own_vhost
from tistis_common.topology import QueueSpec, declare_topology

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def event() -> InboundMessage:
    return InboundMessage(
        tenant_id=uuid.uuid4(), channel=Channel.TIKTOK, platform_account_id="acc",
        platform_user_id="u", platform_message_id=uuid.uuid4().hex, sent_at=datetime.now(UTC),
        text="hola",
    )


async def scrape(runtime: Runtime, queue: str) -> dict[str, float]:
    """state -> value of tistis_queue_messages for `queue`, read from the service's /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{runtime.http_port}/metrics")).text
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tistis_queue_messages"
        for sample in family.samples
        if sample.labels["queue"] == queue
    }


@pytest.fixture
async def service(settings):
    """A consumer service (the shared runtime) on a vhost of its own, sampling every 0.2 s."""
    async with own_vhost(settings) as own:
        runtime = Runtime(own.model_copy(update={"queue_metrics_interval_seconds": 0.2}), "lag-test")
        await runtime.start()
        spec = QueueSpec(f"test.lag.{uuid.uuid4().hex[:8]}", ("message.received.tiktok",))
        assert runtime.connection is not None
        channel = await runtime.connection.channel()
        await declare_topology(channel, own.retry_delays, queues=[spec])
        await channel.close()
        await runtime.serve_http()
        try:
            yield runtime, spec
        finally:
            await runtime.stop()


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path=str(ROOT / ".infra/tools/bin"))
    if found is None:
        subprocess.run(["bash", str(ROOT / "deploy/tools/install-checkers.sh")], check=True)
        found = str(ROOT / ".infra/tools/bin/promtool")
    return found


class TestQueueDepthMetric:
    async def test_in_flight_events_count_as_unacked(self, service):
        runtime, spec = service
        release = asyncio.Event()

        async def stuck(_event):
            await release.wait()
            return []

        runtime.settings = runtime.settings.model_copy(update={"prefetch": 3})
        runtime.consume(spec, stuck)
        await runtime.start_consumers()
        assert runtime.publisher is not None
        for _ in range(5):
            await runtime.publisher.publish(event())
        try:
            await eventually(
                lambda: _equals(scrape(runtime, spec.name), {"ready": 2, "unacked": 3}), timeout=15
            )
        finally:
            release.set()

    async def test_a_stopped_consumer_makes_the_lag_alert_fire(self, service, tmp_path):
        runtime, spec = service

        async def ok(_event):
            return []

        runtime.consume(spec, ok)
        await runtime.start_consumers()
        await runtime.consumers[0].stop(grace=2)  # the consumer stops; the service keeps sampling
        assert runtime.publisher is not None
        captured: list[dict[str, float]] = []
        for rounds in range(1, 5):
            for _ in range(60):
                await runtime.publisher.publish(event())
            captured.append(await eventually(
                lambda n=rounds: _equals(scrape(runtime, spec.name), {"ready": 60 * n, "unacked": 0}),
                timeout=15,
            ))
        # Each captured sample becomes one point 4 minutes apart: above 100 from the second on
        # (pending), still rising 10 minutes later (firing).
        def series(state: str) -> dict[str, str]:
            labels = f'queue="{spec.name}",state="{state}",service="lag-test"'
            return {"series": f"tistis_queue_messages{{{labels}}}",
                    "values": " ".join(str(int(c[state])) for c in captured)}

        tests = {
            "rule_files": [str(ALERTS)],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "4m",
                "input_series": [series("ready"), series("unacked")],
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": "TistisConsumerLagGrowing", "exp_alerts": []},
                    {"eval_time": "14m", "alertname": "TistisConsumerLagGrowing", "exp_alerts": [{
                        "exp_labels": {"severity": "warning", "queue": spec.name},
                        "exp_annotations": {
                            "summary": f"Backlog of {spec.name} keeps growing",
                            "description": "240 messages waiting (ready + in flight) and rising"
                                           " for 10 minutes.",
                        },
                    }]},
                ],
            }],
        }
        path = tmp_path / "captured.test.yml"
        path.write_text(yaml.safe_dump(tests))
        proc = await asyncio.to_thread(
            lambda: subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True,
                                   text=True)
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr + path.read_text()


async def _equals(scraped, expected: dict[str, float]) -> dict[str, float] | None:
    got = await scraped
    return got if got == expected else None
