"""RabbitMQ management HTTP API (settings.rabbitmq_management_url) for what AMQP does not tell:
the queues of a vhost and their unacknowledged (in flight) counts."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
from tistis_common.settings import Settings


def vhost_of(settings: Settings) -> str:
    path = urlsplit(settings.rabbitmq_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _client(settings: Settings) -> httpx.Client:
    parts = urlsplit(settings.rabbitmq_management_url)
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    base = urlunsplit(parts._replace(netloc=netloc))
    return httpx.Client(base_url=base, auth=(parts.username or "guest", parts.password or "guest"),
                        timeout=10)


def queues(settings: Settings) -> dict[str, dict]:
    """name -> {messages_ready, messages_unacknowledged, messages} (sampled by the broker)."""
    with _client(settings) as http:
        response = http.get(
            f"/api/queues/{quote(vhost_of(settings), safe='')}",
            params={"columns": "name,messages,messages_ready,messages_unacknowledged"},
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
