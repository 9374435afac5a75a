"""Builds deploy/grafana/dashboards/tistis.json, the Grafana dashboard of the platform.

The JSON is what Grafana loads (provisioned in docker compose, importable anywhere); this script
is what people edit, because forty panels of hand-written JSON drift apart. After a change:

    uv run python deploy/grafana/dashboard.py

tests/deploy checks that the committed JSON is this script's output and that every metric it
queries is defined in tistis_common.metrics (or is a RabbitMQ/Prometheus one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "tistis.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
WIDTH = 24

Panel = dict[str, Any]


class Layout:
    """Places panels left to right, wrapping rows, so that no gridPos is written by hand."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self._add({"type": "row", "title": title, "collapsed": False, "panels": []}, WIDTH, 1)
        self._newline()

    def add(self, panel: Panel, w: int = 8, h: int = 8) -> None:
        if self.x + w > WIDTH:
            self._newline()
        self._add(panel, w, h)

    def _add(self, panel: Panel, w: int, h: int) -> None:
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    return t


def timeseries(
    title: str,
    *targets: dict[str, Any],
    unit: str = "short",
    description: str = "",
    stack: bool = False,
) -> Panel:
    refs = "ABCDEFGH"
    for i, t in enumerate(targets):
        t["refId"] = refs[i]
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": list(targets),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "showPoints": "never",
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    expr: str,
    unit: str = "short",
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    legend: str = "",
) -> Panel:
    steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "mappings": mappings or [],
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
        },
    }


def quantiles(
    metric: str, by: str, match: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> list[dict[str, Any]]:
    """p50/p95/p99 of a histogram, one series per `by` label value."""
    sel = f"{{{match}}}" if match else ""
    keep = f"{by}, le" if by else "le"
    legend_by = f"{{{{{by}}}}} " if by else ""
    return [
        target(
            f"histogram_quantile({q}, sum by ({keep}) (rate({metric}_bucket{sel}[{RATE}])))",
            f"{legend_by}p{round(q * 100)}",
        )
        for q in qs
    ]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


CH = 'channel=~"$channel"'
TEN = 'tenant=~"$tenant"'
Q = 'queue=~"$queue"'
HEALTH = [
    {
        "type": "value",
        "options": {
            "0": {"text": "unhealthy", "color": "red"},
            "1": {"text": "healthy", "color": "green"},
        },
    }
]


def build() -> dict[str, Any]:
    lay = Layout()

    lay.row("Overview")
    lay.add(
        stat(
            "Services up",
            'sum(up{job="tistis"})',
            description="Scrape targets answering",
            thresholds=[(None, "red"), (5, "green")],
        ),
        w=4,
        h=4,
    )
    lay.add(stat("Webhooks", f"sum(rate(tistis_webhooks_total[{RATE}]))", unit="reqps"), w=4, h=4)
    lay.add(
        stat(
            "Messages waiting",
            'sum(max by (queue, state) (tistis_queue_messages{queue!~".+\\\\.(dlq|delay\\\\..+)"}))',
            description="Ready and in flight in all work queues (consumer lag)",
            thresholds=[(None, "green"), (100, "orange"), (1000, "red")],
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "Dead letters",
            'sum(rabbitmq_queue_messages_ready{queue=~".+\\\\.dlq"}) or vector(0)',
            description="Messages in all <queue>.dlq",
            thresholds=[(None, "green"), (1, "red")],
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "AI fallback share",
            'sum(rate(tistis_ai_replies_total{outcome="fallback"}[1h]))'
            ' / sum(rate(tistis_ai_replies_total{outcome=~"ai|fallback"}[1h]))',
            unit="percentunit",
            thresholds=[(None, "green"), (0.05, "orange"), (0.2, "red")],
        ),
        w=4,
        h=4,
    )
    lay.add(
        stat(
            "Unhealthy connections",
            "count(tistis_connection_healthy == 0) or vector(0)",
            thresholds=[(None, "green"), (1, "red")],
        ),
        w=4,
        h=4,
    )

    lay.row("Ingress: webhooks")
    lay.add(
        timeseries(
            "Webhooks by outcome",
            target(
                f"sum by (outcome) (rate(tistis_webhooks_total{{{CH}}}[{RATE}]))", "{{outcome}}"
            ),
            unit="reqps",
            stack=True,
            description="accepted, duplicate, bad_signature, unknown_tenant, unavailable (503) ...",
        )
    )
    lay.add(
        timeseries(
            "Webhook latency", *quantiles("tistis_webhook_request_seconds", "channel", CH), unit="s"
        )
    )
    lay.add(
        timeseries(
            "Platform events in webhooks",
            target(
                f"sum by (channel, kind) (rate(tistis_webhook_events_total{{{CH}}}[{RATE}]))",
                "{{channel}} {{kind}}",
            ),
            unit="ops",
        )
    )

    lay.row("Broker and consumers")
    lay.add(
        timeseries(
            "Published (confirmed)",
            target(
                f"sum by (event_type) (rate(tistis_events_published_total[{RATE}]))",
                "{{event_type}}",
            ),
            unit="ops",
            stack=True,
        )
    )
    lay.add(
        timeseries(
            "Consumed by outcome",
            target(
                f"sum by (queue, outcome) (rate(tistis_events_consumed_total{{{Q}}}[{RATE}]))",
                "{{queue}} {{outcome}}",
            ),
            unit="ops",
        )
    )
    lay.add(
        timeseries(
            "Consumer lag (ready + in flight)",
            target(
                f'max by (queue, state) (tistis_queue_messages{{{Q}, queue!~".+\\\\.dlq"}})',
                "{{queue}} {{state}}",
            ),
            description="Sampled by the consuming services from RabbitMQ's management API",
        )
    )
    lay.add(
        timeseries(
            "Retries",
            target(f"sum by (queue) (rate(tistis_retries_total{{{Q}}}[{RATE}]))", "{{queue}}"),
            unit="ops",
        )
    )
    lay.add(
        timeseries(
            "Dead letters",
            target(
                f"sum by (queue, error_type) (increase(tistis_dead_letters_total{{{Q}}}[{RATE}]))",
                "moved from {{queue}}: {{error_type}}",
            ),
            target(
                'max by (queue) (rabbitmq_queue_messages_ready{queue=~".+\\\\.dlq"})',
                "{{queue}} depth",
            ),
            description="Events moved to <queue>.dlq, and the depth of each DLQ",
        )
    )
    lay.add(
        timeseries(
            "In flight", target(f"sum by (queue) (tistis_consumer_in_flight{{{Q}}})", "{{queue}}")
        )
    )
    lay.add(
        timeseries(
            "Handler time (p95)",
            *quantiles("tistis_handler_seconds", "queue", Q, (0.95,)),
            unit="s",
        )
    )
    lay.add(
        timeseries(
            "Publish confirm time", *quantiles("tistis_publish_confirm_seconds", ""), unit="s"
        )
    )

    lay.row("AI responder")
    lay.add(
        timeseries(
            "Replies by outcome",
            target(
                f"sum by (outcome) (rate(tistis_ai_replies_total{{{TEN}}}[{RATE}]))", "{{outcome}}"
            ),
            unit="ops",
            stack=True,
            description="ai, fallback, escalated, skipped",
        )
    )
    lay.add(
        timeseries(
            "Fallback share by tenant",
            target(
                f"sum by (tenant) (rate(tistis_ai_replies_total"
                f'{{{TEN}, outcome="fallback"}}[{RATE}]))'
                f" / sum by (tenant) (rate(tistis_ai_replies_total"
                f'{{{TEN}, outcome=~"ai|fallback"}}[{RATE}]))',
                "{{tenant}}",
            ),
            unit="percentunit",
        )
    )
    lay.add(timeseries("Claude latency", *quantiles("tistis_ai_request_seconds", ""), unit="s"))
    lay.add(
        timeseries(
            "Tokens",
            target(f"sum by (kind) (rate(tistis_ai_tokens_total{{{TEN}}}[{RATE}]))", "{{kind}}"),
            unit="short",
            stack=True,
            description="Tokens per second: input, output, cache",
        )
    )
    lay.add(
        timeseries(
            "Tokens by tenant (last hour)",
            target(
                f"sum by (tenant) (increase(tistis_ai_tokens_total{{{TEN}}}[1h]))", "{{tenant}}"
            ),
        )
    )
    lay.add(
        timeseries(
            "Circuit breaker open",
            target("max(tistis_ai_circuit_open)", "open"),
            description="1 while calls to Claude are short-circuited to the fallback",
        )
    )

    lay.row("Dispatcher: sends")
    lay.add(
        timeseries(
            "Sends by outcome",
            target(
                f"sum by (outcome) (rate(tistis_sends_total{{{TEN}, {CH}}}[{RATE}]))", "{{outcome}}"
            ),
            unit="ops",
            stack=True,
            description="sent, duplicate, blocked_window, rate_limited, failed, retry, parked",
        )
    )
    lay.add(
        timeseries(
            "Platform API latency (p95)",
            *quantiles("tistis_platform_request_seconds", "channel", CH, (0.95,)),
            unit="s",
        )
    )
    lay.add(
        timeseries(
            "Messaging-window blocks",
            target(
                f"sum by (channel) (rate(tistis_window_blocks_total{{{CH}}}[{RATE}]))",
                "{{channel}}",
            ),
            unit="ops",
            description="Free-form messages refused outside the 24 h (or platform) window",
        )
    )
    lay.add(
        stat(
            "Connection health",
            f"min by (tenant, channel) (tistis_connection_healthy{{{TEN}, {CH}}})",
            legend="{{tenant}} {{channel}}",
            mappings=HEALTH,
            thresholds=[(None, "red"), (1, "green")],
        ),
        w=24,
        h=5,
    )

    lay.row("Scorer and scheduler")
    lay.add(
        timeseries(
            "Lead score changes",
            target(f"sum by (source) (rate(tistis_score_changes_total[{RATE}]))", "{{source}}"),
            unit="ops",
        )
    )
    lay.add(
        timeseries(
            "Lead classifications",
            target(
                f"sum by (classification) (increase(tistis_leads_classified_total[{RATE}]))",
                "{{classification}}",
            ),
        )
    )
    lay.add(
        timeseries(
            "Bookings by outcome",
            target(f"sum by (outcome) (increase(tistis_bookings_total[{RATE}]))", "{{outcome}}"),
        )
    )
    lay.add(
        timeseries(
            "Reminders by outcome",
            target(f"sum by (outcome) (increase(tistis_reminders_total[{RATE}]))", "{{outcome}}"),
        )
    )
    lay.add(
        timeseries(
            "Reminder lateness",
            *quantiles("tistis_reminder_lag_seconds", "", "", (0.5, 0.9)),
            unit="s",
            description="How late reminders went out after their due time",
        )
    )
    lay.add(
        timeseries(
            "Follow-ups by outcome",
            target(f"sum by (outcome) (increase(tistis_followups_total[{RATE}]))", "{{outcome}}"),
        )
    )

    return {
        "uid": "tistis-core",
        "title": "TIS TIS messaging core",
        "description": "Webhooks, broker, AI replies, sends, scoring and scheduling",
        "tags": ["tistis"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                variable("channel", "Channel", "label_values(tistis_webhooks_total, channel)"),
                variable("tenant", "Tenant", "label_values(tistis_ai_replies_total, tenant)"),
                variable("queue", "Queue", "label_values(tistis_events_consumed_total, queue)"),
            ]
        },
        "panels": lay.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
