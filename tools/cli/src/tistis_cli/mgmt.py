"""RabbitMQ management HTTP API (settings.rabbitmq_management_url) for what AMQP does not tell:
the queues of a vhost and their unacknowledged (in flight) counts."""

from __future__ import annotations

import httpx
from tistis_common.management import QUEUE_COLUMNS, ManagementApi, vhost_of
from tistis_common.settings import Settings


def queues(settings: Settings) -> dict[str, dict]:
    """name -> {messages_ready, messages_unacknowledged, messages} (sampled by the broker)."""
    api = ManagementApi.from_url(settings.rabbitmq_management_url)
    with httpx.Client(base_url=api.base_url, auth=api.auth, timeout=10) as http:
        response = http.get(
            api.queues_path(vhost_of(settings.rabbitmq_url)), params={"columns": QUEUE_COLUMNS}
        )
        response.raise_for_status()
        return {q["name"]: q for q in response.json()}


def discover_dlqs(settings: Settings, known: list[str]) -> list[str]:
    """The topology's DLQs plus any other `*.dlq` of the vhost (best effort)."""
    try:
        extra = sorted(n for n in queues(settings) if n.endswith(".dlq") and n not in known)
    except httpx.HTTPError:
        extra = []
    return [*known, *extra]
