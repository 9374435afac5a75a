"""Writes deploy/k8s/base/prometheusrule.yaml: alerts.yml wrapped for the Prometheus operator.

alerts.yml stays the one source (docker compose loads it as is); after changing it, run

    uv run python deploy/prometheus/prometheusrule.py

tests/deploy checks that the committed manifest is this script's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
ALERTS = HERE / "alerts.yml"
OUT = HERE.parent / "k8s" / "base" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by deploy/prometheus/prometheusrule.py:\n"
    "# edit the alerts there, then run the script. Your Prometheus may select rules by a label\n"
    "# (for example release: kube-prometheus-stack): add it in the overlay.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks, as in alerts.yml, so that the manifest reads well."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def manifest() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "tistis"},
        "spec": {"groups": yaml.safe_load(ALERTS.read_text())["groups"]},
    }


def render() -> str:
    return HEADER + yaml.dump(manifest(), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
