"""Shared helpers of the offline deploy checks: tool lookup, rendered overlays, metric registry.

Every tool comes from the project itself: kubectl (kustomize), hadolint, docker compose and the
Kubernetes schemas from the root dev dependency group, promtool from
deploy/tools/install-checkers.sh (run here once if it is missing).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("ingress", "ai-responder", "dispatcher", "scorer", "scheduler")
CONSUMERS = SERVICES[1:]
# Work queues the consumers own (each also has <queue>.dlq), from the broker topology.
QUEUES = {
    "ai-responder.inbound",
    "ai-responder.replies",
    "dispatcher.whatsapp",
    "dispatcher.instagram",
    "dispatcher.facebook",
    "dispatcher.tiktok",
    "dispatcher.status",
    "scorer.signals",
    "scheduler.requests",
}
INSTALL_CHECKERS = DEPLOY / "tools" / "install-checkers.sh"


def _search_path() -> str:
    return os.pathsep.join(
        [
            str(Path(sys.executable).parent),
            str(ROOT / ".infra" / "tools" / "bin"),
            os.environ.get("PATH", ""),
        ]
    )


@functools.cache
def tool(name: str) -> str:
    """Absolute path of a checker binary; installs the non-PyPI ones on first need."""
    found = shutil.which(name, path=_search_path())
    if found is None and name == "promtool":
        subprocess.run(["bash", str(INSTALL_CHECKERS)], check=True)
        found = shutil.which(name, path=_search_path())
    if found is None:
        pytest.fail(f"{name} not found: run `uv sync` and {INSTALL_CHECKERS.relative_to(ROOT)}")
    return found


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a checker; `env` adds variables, or removes them where the value is None."""
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, env=full)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = run(tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def by_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload, None for anything else."""
    if doc["kind"] in ("Deployment", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def workload(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a resource known to be a workload."""
    spec = pod_spec(doc)
    assert spec is not None, f"{doc['kind']} has no pod template"
    return spec


@functools.cache
def settings_env_names() -> frozenset[str]:
    """Environment variable names the services read: Settings fields, upper-cased."""
    from tistis_common.settings import Settings

    return frozenset(name.upper() for name in Settings.model_fields)


def shutdown_grace_seconds() -> float:
    from tistis_common.settings import Settings

    return float(Settings.model_fields["shutdown_grace_seconds"].default)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
