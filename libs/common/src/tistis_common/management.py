"""RabbitMQ's management HTTP API, for what AMQP does not tell: how many messages of a queue are
unacknowledged (in flight), not only ready. The consumer services sample their own queues into
`tistis_queue_messages{queue, state}` so that the lag alert and dashboard see real numbers.

The broker refreshes these counts every `collect_statistics_interval` (5 s by default), so a
sample is at most that old.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from tistis_common import metrics
from tistis_common.logging import get_logger
from tistis_common.topology import DLQ_POLICY, DLQ_POLICY_NAME

log = get_logger(__name__)

QUEUE_COLUMNS = "name,messages,messages_ready,messages_unacknowledged"


@dataclass(frozen=True)
class ManagementApi:
    base_url: str  # without credentials
    auth: tuple[str, str]

    @classmethod
    def from_url(cls, url: str) -> ManagementApi:
        parts = urlsplit(url)
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        return cls(urlunsplit(parts._replace(netloc=netloc)),
                   (unquote(parts.username or "guest"), unquote(parts.password or "guest")))

    def queues_path(self, vhost: str) -> str:
        return f"/api/queues/{quote(vhost, safe='')}"


async def broker_major_version(http: httpx.AsyncClient) -> int:
    response = await http.get("/api/overview", params={"columns": "rabbitmq_version"})
    response.raise_for_status()
    return int(str(response.json()["rabbitmq_version"]).split(".")[0])


async def apply_dlq_policy(http: httpx.AsyncClient, vhost: str) -> bool:
    """The `tistis-dlq` policy on a vhost, where the broker needs it (4.x); True if applied."""
    if await broker_major_version(http) < 4:
        return False
    response = await http.put(f"/api/policies/{quote(vhost, safe='')}/{DLQ_POLICY_NAME}",
                              json=DLQ_POLICY)
    response.raise_for_status()
    return True


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


async def sample_queue_depths(
    api: ManagementApi, vhost: str, queues: Sequence[str], stopping: asyncio.Event,
    interval: float,
) -> None:
    """Until `stopping`: every `interval` seconds, ready and unacknowledged counts of `queues`
    into the gauge. A failed sample is logged and the gauge keeps its last value."""
    wanted = set(queues)
    async with httpx.AsyncClient(base_url=api.base_url, auth=api.auth, timeout=10) as http:
        while not stopping.is_set():
            try:
                response = await http.get(api.queues_path(vhost), params={"columns": QUEUE_COLUMNS})
                response.raise_for_status()
                for q in response.json():
                    if q["name"] in wanted:
                        metrics.QUEUE_MESSAGES.labels(q["name"], "ready").set(q.get("messages_ready", 0))
                        metrics.QUEUE_MESSAGES.labels(q["name"], "unacked").set(
                            q.get("messages_unacknowledged", 0)
                        )
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("queue_depth.sample_failed", error=type(exc).__name__)
            try:
                await asyncio.wait_for(stopping.wait(), timeout=interval)
            except TimeoutError:
                pass
