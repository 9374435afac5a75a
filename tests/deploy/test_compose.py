"""docker-compose.yml: `docker compose config` (needs no daemon) and the structure we rely on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_support import ROOT, SERVICES, run, settings_env_names, shutdown_grace_seconds, tool
from tistis_common.topology import DLQ_POLICY, DLQ_POLICY_NAME

COMPOSE = ROOT / "docker-compose.yml"
SANDBOX_ENV = ROOT / "deploy" / "compose" / "sandbox.env"
# Never interpolate from the shell running the tests: only the compose file and the env file.
CLEAN_ENV: dict[str, str | None] = {
    name: None for name in (*settings_env_names(), "COMPOSE_PROFILES", "TISTIS_TAG")
}


def config(*args: str) -> dict[str, Any]:
    out = run(
        tool("docker-compose"),
        "-f",
        str(COMPOSE),
        "--env-file",
        "/dev/null",
        *args,
        "config",
        "--format",
        "yaml",
        env=CLEAN_ENV,
    ).stdout
    return yaml.safe_load(out)


@pytest.fixture(scope="module")
def default() -> dict[str, Any]:
    return config()


@pytest.fixture(scope="module")
def with_sandbox() -> dict[str, Any]:
    return yaml.safe_load(
        run(
            tool("docker-compose"),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(SANDBOX_ENV),
            "config",
            "--format",
            "yaml",
            env=CLEAN_ENV,
        ).stdout
    )


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    return float(duration)


class TestComposePlatform:
    def test_plain_up_starts_the_platform_without_the_sandbox(self, default: dict) -> None:
        expected = {"postgres", "rabbitmq", "migrate", "seed", "prometheus", "grafana", *SERVICES}
        assert set(default["services"]) == expected

    def test_sandbox_env_file_adds_the_sandbox_and_points_apis_at_it(self, with_sandbox: dict) -> None:
        assert "sandbox" in with_sandbox["services"]
        env = with_sandbox["services"]["dispatcher"]["environment"]
        assert env["GRAPH_API_BASE_URL"] == "http://sandbox:9100"
        assert env["ANTHROPIC_BASE_URL"] == "http://sandbox:9100"

    def test_images_are_pinned(self, default: dict) -> None:
        assert default["services"]["rabbitmq"]["image"] == "rabbitmq:4.0-management"
        assert default["services"]["postgres"]["image"] == "postgres:16"
        for name, svc in default["services"].items():
            assert not svc["image"].endswith(":latest"), name

    @pytest.mark.parametrize("name", SERVICES)
    def test_each_service_builds_from_the_one_dockerfile(self, default: dict, name: str) -> None:
        build = default["services"][name]["build"]
        assert Path(build["context"]) == ROOT
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
        assert build["args"]["SERVICE"] == name

    @pytest.mark.parametrize("name", SERVICES)
    def test_services_wait_for_a_healthy_broker_and_a_migrated_database(
        self, default: dict, name: str
    ) -> None:
        deps = default["services"][name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["rabbitmq"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"

    @pytest.mark.parametrize("name", SERVICES)
    def test_services_get_time_to_drain_before_sigkill(self, default: dict, name: str) -> None:
        svc = default["services"][name]
        assert seconds(svc["stop_grace_period"]) > shutdown_grace_seconds()
        assert svc["read_only"] is True and "ALL" in svc["cap_drop"]

    def test_infrastructure_has_healthchecks(self, default: dict) -> None:
        for name in ("postgres", "rabbitmq", "prometheus", "grafana"):
            assert default["services"][name]["healthcheck"]["test"], name

    def test_migration_runs_once_before_the_seed(self, default: dict) -> None:
        migrate, seed = default["services"]["migrate"], default["services"]["seed"]
        assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert seed["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        fixture = seed["command"][-1]
        assert fixture.startswith("/app/fixtures/"), "the Dockerfile copies fixtures/ there"
        assert (ROOT / "fixtures" / fixture.removeprefix("/app/fixtures/")).is_file()

    def test_sandbox_sits_behind_a_profile(self) -> None:
        raw = yaml.safe_load(COMPOSE.read_text())
        assert raw["services"]["sandbox"]["profiles"] == ["sandbox"]

    def test_environment_names_are_settings_fields(self, default: dict) -> None:
        known = settings_env_names()
        for name in (*SERVICES, "migrate", "seed"):
            unknown = set(default["services"][name]["environment"]) - known - {"SERVICE_NAME"}
            assert not unknown, f"{name}: {unknown} are not Settings fields (typo?)"

    def test_no_credential_has_a_value_by_default(self, default: dict) -> None:
        env = default["services"]["ai-responder"]["environment"]
        for key in (
            "ANTHROPIC_API_KEY",
            "META_APP_SECRET",
            "WHATSAPP_ACCESS_TOKEN",
            "TIKTOK_CLIENT_SECRET",
            "CRON_SECRET",
        ):
            assert env.get(key) is None, f"{key} must come from the operator, not the repo"

    def test_services_use_their_own_broker_user_and_dead_letters_are_kept(self, default: dict) -> None:
        definitions = json.loads((ROOT / "deploy/compose/rabbitmq/definitions.json").read_text())
        tags = {u["name"]: u["tags"] for u in definitions["users"]}
        for name in (*SERVICES, "migrate", "seed"):
            env = default["services"][name]["environment"]
            for key in ("RABBITMQ_URL", "RABBITMQ_MANAGEMENT_URL"):
                user = urlsplit(env[key]).username
                assert user in tags and "administrator" not in tags[user], f"{name}: {key}"
        (policy,) = definitions["policies"]
        assert policy["name"] == DLQ_POLICY_NAME
        assert {k: v for k, v in policy.items() if k not in ("vhost", "name")} == DLQ_POLICY
        assert "consistent_hash" not in (ROOT / "deploy/compose/rabbitmq/enabled_plugins").read_text()

    def test_mounted_config_files_exist(self, default: dict) -> None:
        for name, svc in default["services"].items():
            for vol in svc.get("volumes", []):
                if vol["type"] == "bind":
                    assert Path(vol["source"]).exists(), f"{name}: {vol['source']}"

    def test_prometheus_scrapes_all_five_services_and_rabbitmq(self) -> None:
        prom = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
        jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
        targets = {t for sc in jobs["tistis"]["static_configs"] for t in sc["targets"]}
        assert targets == {f"{name}:8000" for name in SERVICES}
        assert jobs["rabbitmq"]["metrics_path"] == "/metrics/per-object"
        assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]

    def test_grafana_is_provisioned_with_the_dashboard_and_prometheus(self, default: dict) -> None:
        grafana = default["services"]["grafana"]
        mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
        provisioning = mounts["/etc/grafana/provisioning"]
        (provider,) = yaml.safe_load((provisioning / "dashboards" / "tistis.yml").read_text())["providers"]
        dashboards = mounts[provider["options"]["path"]]
        assert (dashboards / "tistis.json").is_file()
        (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
            "datasources"
        ]
        assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
