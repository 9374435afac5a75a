"""Alert rules and the Grafana dashboard: promtool, and every metric they use must exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, ROOT, run, tool

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tistis.json"
DASHBOARD_SCRIPT = DEPLOY / "grafana" / "dashboard.py"

# Metrics that are not ours: Prometheus' own and RabbitMQ's prometheus plugin (per-object),
# with the labels we may select on.
EXTERNAL_METRICS: dict[str, set[str]] = {
    "up": {"job", "instance", "service"},
    "rabbitmq_queue_messages_ready": {"queue", "vhost"},
    "rabbitmq_queue_messages": {"queue", "vhost"},
    "rabbitmq_queue_consumers": {"queue", "vhost"},
}
# Labels Prometheus attaches to every scraped series (target labels) and the histogram bucket.
TARGET_LABELS = {"job", "instance", "service", "namespace", "pod", "le"}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "deriv", "by", "without", "and",
    "or", "unless", "histogram_quantile", "vector", "on", "ignoring", "group_left", "bool",
}  # fmt: skip


@cache
def our_metrics() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric defined in tistis_common.metrics."""
    from prometheus_client.metrics import MetricWrapperBase
    from tistis_common import metrics

    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    out: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for suffix in suffixes[str(obj._type)]:
                out[obj._name + suffix] = set(obj._labelnames)
    return out


def known_metrics() -> dict[str, set[str]]:
    return {**our_metrics(), **EXTERNAL_METRICS}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables filled in, so that promtool can parse it."""
    expr = expr.replace("$__rate_interval", "5m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are not names
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # nor are label names and ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"label_values\(\s*([a-z_:][a-z0-9_:]*)\s*,[^)]*\)", r"\1", expr)
    names = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?![\w(])", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d.*|e", n)}


def selected_labels(expr: str) -> dict[str, set[str]]:
    """metric -> label names used in its {matchers}."""
    out: dict[str, set[str]] = {}
    for metric, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        out.setdefault(metric, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return out


def grouping_labels(expr: str) -> set[str]:
    groups = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
    groups += re.findall(r"label_values\(\s*[\w:]+\s*,\s*(\w+)\s*\)", expr)
    return {label.strip() for g in groups for label in g.split(",") if label.strip()}


ALL_EXPRS = [("alert " + r["alert"], r["expr"]) for r in alert_rules()] + [
    ("dashboard", e) for e in dashboard_exprs()
]


class TestAlertRules:
    def test_promtool_loads_the_rules(self) -> None:
        out = run(tool("promtool"), "check", "rules", str(ALERTS)).stdout
        assert f"SUCCESS: {len(alert_rules())} rules found" in out

    def test_promtool_unit_tests_pass(self) -> None:
        run(tool("promtool"), "test", "rules", str(ALERT_TESTS), cwd=ALERT_TESTS.parent)

    def test_every_alert_the_issue_asks_for_is_there(self) -> None:
        names = {r["alert"] for r in alert_rules()}
        assert {
            "TistisDeadLetterQueueNotEmpty", "TistisConsumerLagGrowing",
            "TistisWebhooksUnavailable", "TistisWebhookSignatureFailures",
            "TistisAIFallbackRateHigh", "TistisConnectionUnhealthy", "TistisRemindersLate",
        } <= names  # fmt: skip

    def test_every_alert_has_a_unit_test(self) -> None:
        tested = {
            case["alertname"]
            for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
            for case in test["alert_rule_test"]
            if case.get("exp_alerts")
        }
        assert {r["alert"] for r in alert_rules()} <= tested

    def test_kubernetes_gets_the_same_rules(self) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", "import prometheusrule as p; print(p.render(), end='')"],
            cwd=ALERTS.parent,
            capture_output=True,
            text=True,
            check=True,
        )
        committed = DEPLOY / "k8s" / "base" / "prometheusrule.yaml"
        assert proc.stdout == committed.read_text(), (
            "run `uv run python deploy/prometheus/prometheusrule.py` and commit the manifest"
        )
        groups = yaml.safe_load(committed.read_text())["spec"]["groups"]
        assert groups == yaml.safe_load(ALERTS.read_text())["groups"]

    def test_every_alert_has_severity_and_a_summary(self) -> None:
        for rule in alert_rules():
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]

    def test_compose_prometheus_config_is_valid(self, tmp_path: Path) -> None:
        config = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
        shutil.copy(ALERTS, tmp_path / "alerts.yml")
        config["rule_files"] = [str(tmp_path / "alerts.yml")]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))


class TestDashboard:
    def test_committed_json_is_the_generators_output(self) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", "import dashboard; print(dashboard.render(), end='')"],
            cwd=DASHBOARD_SCRIPT.parent,
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stdout == DASHBOARD.read_text(), (
            f"run `uv run python {DASHBOARD_SCRIPT.relative_to(ROOT)}` and commit the JSON"
        )

    def test_panels_are_well_formed(self) -> None:
        dash = json.loads(DASHBOARD.read_text())
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        variables = {v["name"] for v in dash["templating"]["list"]}
        assert "datasource" in variables
        for panel in dash["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, panel["title"]
            for t in panel["targets"]:
                used = set(re.findall(r"\$\{?(\w+)\}?", t["expr"])) - {"__rate_interval"}
                assert used <= variables, f"{panel['title']}: undefined {used - variables}"

    def test_dashboard_covers_what_the_issue_asks_for(self) -> None:
        used = set().union(*(metric_names(e) for e in dashboard_exprs()))
        for metric in (
            "tistis_webhooks_total", "tistis_events_published_total",
            "tistis_events_consumed_total", "tistis_queue_messages", "tistis_retries_total",
            "tistis_dead_letters_total", "tistis_ai_request_seconds_bucket",
            "tistis_ai_tokens_total", "tistis_ai_replies_total", "tistis_sends_total",
            "tistis_window_blocks_total", "tistis_reminders_total", "tistis_bookings_total",
        ):  # fmt: skip
            assert metric in used, metric

    def test_every_query_parses(self, tmp_path: Path) -> None:
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:query_{i}", "expr": as_promql(e)}
            for i, e in enumerate(dashboard_exprs()) if not e.startswith("label_values")
        ]}]}  # fmt: skip
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        run(tool("promtool"), "check", "rules", str(tmp_path / "rules.yml"))


class TestMetricNames:
    @pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
    def test_every_metric_is_exported(self, where: str, expr: str) -> None:
        unknown = metric_names(expr) - set(known_metrics())
        assert not unknown, f"{where}: {unknown} not defined in tistis_common.metrics"

    @pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
    def test_every_label_exists_on_its_metric(self, where: str, expr: str) -> None:
        known = known_metrics()
        for metric, labels in selected_labels(expr).items():
            extra = labels - known[metric] - TARGET_LABELS
            assert not extra, f"{where}: {metric} has no label {extra}"
        in_expr = set().union(*(known[m] for m in metric_names(expr))) | TARGET_LABELS
        assert grouping_labels(expr) <= in_expr, f"{where}: {grouping_labels(expr) - in_expr}"

    def test_the_name_check_is_not_vacuous(self) -> None:
        assert metric_names('sum by (queue) (rate(tistis_nope_total{queue=~"a.b"}[5m]))') == {
            "tistis_nope_total"
        }
        assert "tistis_webhooks_total" in our_metrics()
        assert our_metrics()["tistis_sends_total"] == {"tenant", "channel", "outcome"}
