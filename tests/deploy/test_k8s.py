"""deploy/k8s: render every overlay with kustomize, validate it offline, check what we rely on."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import (
    CONSUMERS,
    K8S,
    OVERLAYS,
    QUEUES,
    SERVICES,
    by_kind,
    pod_spec,
    render,
    settings_env_names,
    shutdown_grace_seconds,
    workload,
)
from tistis_common.topology import DLQ_POLICY, DLQ_POLICY_NAME

# Oldest Kubernetes we support, and the newest the schemas know.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PRESTOP_SECONDS = 5

# The Kubernetes schemas do not cover CRDs; these hold the part of KEDA's and the Prometheus
# operator's schemas that we use, strict, so that a misspelt field fails here and not at apply.
_OBJ = {"type": "object"}
_RABBITMQ_TRIGGER = {
    **_OBJ,
    "additionalProperties": False,
    "required": ["type", "metadata"],
    "properties": {
        "type": {"const": "rabbitmq"},
        "metadata": {
            **_OBJ,
            "additionalProperties": False,
            "required": ["protocol", "mode", "queueName", "value"],
            "properties": {
                "protocol": {"enum": ["amqp", "http", "auto"]},
                "vhostName": {"type": "string"},
                "mode": {"enum": ["QueueLength", "MessageRate"]},
                "queueName": {"type": "string"},
                "value": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
            },
        },
        "authenticationRef": {**_OBJ, "required": ["name"]},
    },
}
# KEDA's Prometheus scaler (https://keda.sh/docs/latest/scalers/prometheus/).
_PROMETHEUS_TRIGGER = {
    **_OBJ,
    "additionalProperties": False,
    "required": ["type", "metadata"],
    "properties": {
        "type": {"const": "prometheus"},
        "metadata": {
            **_OBJ,
            "additionalProperties": False,
            "required": ["serverAddress", "query", "threshold"],
            "properties": {
                "serverAddress": {"type": "string", "pattern": "^https?://"},
                "query": {"type": "string"},
                "threshold": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
                "activationThreshold": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
            },
        },
        "authenticationRef": {**_OBJ, "required": ["name"]},
    },
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        **_OBJ,
        "required": ["spec"],
        "properties": {
            "spec": {
                **_OBJ,
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        **_OBJ,
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string"},
                            "apiVersion": {"type": "string"},
                        },
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"oneOf": [_RABBITMQ_TRIGGER, _PROMETHEUS_TRIGGER]},
                    },
                },
            }
        },
    },
    "TriggerAuthentication": {
        **_OBJ,
        "required": ["spec"],
        "properties": {
            "spec": {
                **_OBJ,
                "additionalProperties": False,
                "required": ["secretTargetRef"],
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            **_OBJ,
                            "additionalProperties": False,
                            "required": ["parameter", "name", "key"],
                            "properties": {k: {"type": "string"} for k in ("parameter", "name", "key")},
                        },
                    }
                },
            }
        },
    },
    "PrometheusRule": {
        **_OBJ,
        "required": ["spec"],
        "properties": {
            "spec": {
                **_OBJ,
                "additionalProperties": False,
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            **_OBJ,
                            "additionalProperties": False,
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        **_OBJ,
                                        "additionalProperties": False,
                                        "required": ["alert", "expr"],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "expr": {"type": "string"},
                                            "for": {"type": "string", "pattern": r"^\d+[smh]$"},
                                            "labels": {**_OBJ, "additionalProperties": {"type": "string"}},
                                            "annotations": {
                                                **_OBJ,
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        },
    },
    # Gateway API v1 (https://gateway-api.sigs.k8s.io/reference/spec/#httproute), what we use.
    "HTTPRoute": {
        **_OBJ,
        "required": ["apiVersion", "spec"],
        "properties": {
            "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
            "spec": {
                **_OBJ,
                "additionalProperties": False,
                "required": ["parentRefs", "rules"],
                "properties": {
                    "parentRefs": {"type": "array", "minItems": 1, "items": {
                        **_OBJ, "additionalProperties": False, "required": ["name"],
                        "properties": {k: {"type": "string"}
                                       for k in ("name", "namespace", "sectionName")},
                    }},
                    "hostnames": {"type": "array", "items": {"type": "string"}},
                    "rules": {"type": "array", "minItems": 1, "items": {
                        **_OBJ, "additionalProperties": False, "required": ["backendRefs"],
                        "properties": {
                            "matches": {"type": "array", "items": {
                                **_OBJ, "additionalProperties": False,
                                "properties": {"path": {
                                    **_OBJ, "additionalProperties": False,
                                    "required": ["type", "value"],
                                    "properties": {
                                        "type": {"enum": ["Exact", "PathPrefix",
                                                          "RegularExpression"]},
                                        "value": {"type": "string", "pattern": "^/"},
                                    },
                                }},
                            }},
                            "timeouts": {
                                **_OBJ, "additionalProperties": False,
                                "properties": {k: {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"}
                                               for k in ("request", "backendRequest")},
                            },
                            "backendRefs": {"type": "array", "minItems": 1, "items": {
                                **_OBJ, "additionalProperties": False,
                                "required": ["name", "port"],
                                "properties": {"name": {"type": "string"},
                                               "port": {"type": "integer"}},
                            }},
                        },
                    }},
                },
            },
        },
    },
    # RabbitMQ messaging topology operator (rabbitmq.com/v1beta1 Policy), what we use.
    "Policy": {
        **_OBJ,
        "required": ["apiVersion", "spec"],
        "properties": {
            "apiVersion": {"const": "rabbitmq.com/v1beta1"},
            "spec": {
                **_OBJ,
                "additionalProperties": False,
                "required": ["name", "pattern", "definition", "rabbitmqClusterReference"],
                "properties": {
                    "name": {"type": "string"}, "vhost": {"type": "string"},
                    "pattern": {"type": "string"},
                    "applyTo": {"enum": ["queues", "exchanges", "all", "classic_queues",
                                        "quorum_queues", "streams"]},
                    "priority": {"type": "integer"},
                    "definition": _OBJ,
                    "rabbitmqClusterReference": {
                        **_OBJ, "additionalProperties": False, "required": ["name"],
                        "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
                    },
                },
            }
        },
    },
    "ServiceMonitor": {
        **_OBJ,
        "required": ["spec"],
        "properties": {
            "spec": {
                **_OBJ,
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": _OBJ,
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            **_OBJ,
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                                "scrapeTimeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                            },
                        },
                    },
                },
            }
        },
    },
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Label selector semantics for matchLabels and In/NotIn/Exists expressions."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
    return True


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, tuple[dict[str, Any], ...]]:
    return request.param, render(request.param)


class TestSchemas:
    @pytest.mark.parametrize("version", K8S_VERSIONS)
    def test_every_builtin_resource_is_valid(self, overlay: tuple, version: str) -> None:
        name, docs = overlay
        checked = 0
        for doc in docs:
            if doc["kind"] in CRD_SCHEMAS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {err.message}")
            checked += 1
        assert checked > 20

    def test_custom_resources_match_the_fields_we_use(self, overlay: tuple) -> None:
        name, docs = overlay
        seen = set()
        for doc in docs:
            if doc["kind"] in CRD_SCHEMAS:
                jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
                seen.add(doc["kind"])
        public_routes = {"HTTPRoute"} if name == "dev" else set()  # dev: kubectl port-forward
        assert seen == set(CRD_SCHEMAS) - public_routes

    def test_the_validator_is_not_vacuous(self) -> None:
        deployment = copy.deepcopy(by_kind(render("prod"), "Deployment")["tistis-scorer"])
        deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
        scaled = copy.deepcopy(by_kind(render("prod"), "ScaledObject")["tistis-scorer"])
        scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = "5"
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(scaled, CRD_SCHEMAS["ScaledObject"])

    def test_secret_example_is_valid_and_names_only_settings(self) -> None:
        path = K8S / "secret.example.yaml"
        doc = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
        commented = set(re.findall(r"^\s*#\s*([A-Z][A-Z0-9_]+):", path.read_text(), re.M))
        keys = set(doc["stringData"]) | commented
        assert keys <= settings_env_names(), keys - settings_env_names()
        assert all("CHANGE-ME" in v for v in doc["stringData"].values()), "placeholders only"


class TestWorkloads:
    def test_one_deployment_service_and_pdb_per_service(self, overlay: tuple) -> None:
        _, docs = overlay
        names = {f"tistis-{s}" for s in SERVICES}
        assert set(by_kind(docs, "Deployment")) == names
        assert names <= set(by_kind(docs, "Service"))
        pdbs = by_kind(docs, "PodDisruptionBudget")
        assert set(pdbs) == names
        for name, deployment in by_kind(docs, "Deployment").items():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert selects(pdbs[name]["spec"]["selector"], labels)
            assert selects({"matchLabels": by_kind(docs, "Service")[name]["spec"]["selector"]}, labels)

    def test_probes_point_at_readyz_and_healthz(self, overlay: tuple) -> None:
        _, docs = overlay
        for name, deployment in by_kind(docs, "Deployment").items():
            container = workload(deployment)["containers"][0]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["ports"][0]["containerPort"] == 8000

    def test_grace_period_covers_prestop_and_the_drain(self, overlay: tuple) -> None:
        _, docs = overlay
        for name, deployment in by_kind(docs, "Deployment").items():
            spec = workload(deployment)
            pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop == ["sleep", str(PRESTOP_SECONDS)], name
            budget = PRESTOP_SECONDS + shutdown_grace_seconds()
            assert spec["terminationGracePeriodSeconds"] > budget, name

    def test_every_pod_meets_the_restricted_pod_security_standard(self, overlay: tuple) -> None:
        _, docs = overlay
        for doc in docs:
            spec = pod_spec(doc)
            if spec is None:
                continue
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            assert spec["securityContext"]["runAsNonRoot"] is True, where
            assert spec["securityContext"]["runAsUser"] != 0, where
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            assert spec["automountServiceAccountToken"] is False, where
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert c["resources"]["requests"]["cpu"], where
                assert c["resources"]["limits"]["memory"], where
        namespaces = by_kind(docs, "Namespace")
        assert [
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] for ns in namespaces.values()
        ] == ["restricted"]

    def test_config_comes_from_the_configmap_and_the_secret(self, overlay: tuple) -> None:
        _, docs = overlay
        configmaps = by_kind(docs, "ConfigMap")
        for doc in docs:
            spec = pod_spec(doc)
            if spec is None:
                continue
            refs = spec["containers"][0]["envFrom"]
            assert refs[0]["configMapRef"]["name"] in configmaps
            assert refs[1]["secretRef"]["name"] == "tistis-secrets"
        for cm in configmaps.values():
            assert set(cm["data"]) <= settings_env_names(), set(cm["data"]) - settings_env_names()

    def test_migration_is_a_job_with_the_ops_cli(self, overlay: tuple) -> None:
        _, docs = overlay
        job = by_kind(docs, "Job")["tistis-migrate"]
        container = workload(job)["containers"][0]
        assert container["args"] == ["migrate"]
        assert re.search(r"(^|/)tistis-cli:", container["image"])
        assert workload(job)["restartPolicy"] == "Never"

    def test_broker_and_database_are_external(self, overlay: tuple) -> None:
        _, docs = overlay
        services = by_kind(docs, "Service")
        for name in ("rabbitmq", "postgres"):
            assert services[name]["spec"]["type"] == "ExternalName"
        assert not by_kind(docs, "StatefulSet")


class TestScaling:
    def test_consumers_scale_on_their_queues(self, overlay: tuple) -> None:
        _, docs = overlay
        scaled = by_kind(docs, "ScaledObject")
        auths = by_kind(docs, "TriggerAuthentication")
        assert set(scaled) == {f"tistis-{c}" for c in CONSUMERS}
        used = set()
        for name, obj in scaled.items():
            assert obj["spec"]["scaleTargetRef"]["name"] == name
            assert obj["spec"]["minReplicaCount"] >= 1, "consumers keep one warm replica"
            for trigger in obj["spec"]["triggers"]:
                if trigger["type"] == "prometheus":  # work held by the replicas, not queued
                    assert "tistis_ai_replies_in_flight" in trigger["metadata"]["query"]
                    continue
                queue = trigger["metadata"]["queueName"]
                assert queue in QUEUES, f"{name}: unknown queue {queue}"
                assert queue.split(".")[0] == name.removeprefix("tistis-")
                assert trigger["authenticationRef"]["name"] in auths
                used.add(queue)
        assert used == QUEUES

    def test_keda_counts_unacked_too_and_reaches_the_broker_from_its_own_namespace(
        self, overlay: tuple
    ) -> None:
        name, docs = overlay
        for obj in by_kind(docs, "ScaledObject").values():
            for trigger in obj["spec"]["triggers"]:
                if trigger["type"] != "rabbitmq":
                    continue  # the ai-responder's replies in flight (Prometheus)
                # Over AMQP KEDA sees ready messages only; over HTTP ready + unacknowledged.
                assert trigger["metadata"]["protocol"] == "http"
                assert trigger["metadata"]["vhostName"] == "/"
        (auth,) = by_kind(docs, "TriggerAuthentication").values()
        assert auth["spec"]["secretTargetRef"] == [
            {"parameter": "host", "name": "tistis-secrets", "key": "RABBITMQ_MANAGEMENT_URL"}
        ]
        namespace = {"dev": "tistis-dev", "prod": "tistis"}[name]
        if name == "dev":
            import base64

            (secret,) = by_kind(docs, "Secret").values()
            url = base64.b64decode(secret["data"]["RABBITMQ_MANAGEMENT_URL"]).decode()
        else:
            url = yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"][
                "RABBITMQ_MANAGEMENT_URL"]
        host = url.split("@")[-1].split(":")[0]
        assert host == f"rabbitmq.{namespace}.svc.cluster.local", "KEDA resolves short names in its namespace"
        assert "rabbitmq" in by_kind(docs, "Service")

    def test_the_broker_keeps_dead_letters_that_are_looked_at(self, overlay: tuple) -> None:
        _, docs = overlay
        spec = by_kind(docs, "Policy")[DLQ_POLICY_NAME]["spec"]
        assert (spec["name"], spec["vhost"]) == (DLQ_POLICY_NAME, "/")
        assert {"pattern": spec["pattern"], "apply-to": spec["applyTo"], "priority": spec["priority"],
                "definition": spec["definition"]} == DLQ_POLICY

    def test_migrations_run_before_the_sync(self, overlay: tuple) -> None:
        _, docs = overlay
        annotations = by_kind(docs, "Job")["tistis-migrate"]["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/hook"] == "PreSync"

    def test_ingress_scales_on_cpu(self, overlay: tuple) -> None:
        _, docs = overlay
        (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
        assert hpa["spec"]["scaleTargetRef"]["name"] == "tistis-ingress"
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        deployment = by_kind(docs, "Deployment")["tistis-ingress"]
        assert workload(deployment)["containers"][0]["resources"]["requests"]["cpu"]

    def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(self, overlay: tuple) -> None:
        _, docs = overlay
        for name, deployment in by_kind(docs, "Deployment").items():
            assert "replicas" not in deployment["spec"], name


class TestNetworkAndMonitoring:
    def test_namespace_denies_by_default(self, overlay: tuple) -> None:
        _, docs = overlay
        deny = by_kind(docs, "NetworkPolicy")["tistis-default-deny"]["spec"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny

    def test_only_the_ingress_accepts_outside_traffic(self, overlay: tuple) -> None:
        _, docs = overlay
        deployments = by_kind(docs, "Deployment")
        for policy in by_kind(docs, "NetworkPolicy").values():
            for rule in policy["spec"].get("ingress", []):
                if "from" in rule:
                    continue  # restricted to a source
                targets = [
                    n
                    for n, d in deployments.items()
                    if selects(policy["spec"]["podSelector"], d["spec"]["template"]["metadata"]["labels"])
                ]
                assert targets == ["tistis-ingress"], policy["metadata"]["name"]

    def test_every_pod_may_reach_dns_broker_and_database(self, overlay: tuple) -> None:
        _, docs = overlay
        ports_needed = {53, 5432, 5672}
        for doc in docs:
            spec = pod_spec(doc)
            if spec is None:
                continue
            labels = (doc["spec"].get("template") or doc["spec"]["jobTemplate"]["spec"]["template"])[
                "metadata"
            ]["labels"]
            allowed = {
                port["port"]
                for policy in by_kind(docs, "NetworkPolicy").values()
                if selects(policy["spec"]["podSelector"], labels)
                for rule in policy["spec"].get("egress", [])
                for port in rule.get("ports", [])
            }
            assert ports_needed <= allowed, f"{doc['metadata']['name']}: {ports_needed - allowed}"

    def test_servicemonitor_scrapes_exactly_the_five_services(self, overlay: tuple) -> None:
        _, docs = overlay
        (monitor,) = by_kind(docs, "ServiceMonitor").values()
        scraped = {
            name
            for name, svc in by_kind(docs, "Service").items()
            if selects(monitor["spec"]["selector"], svc["metadata"]["labels"])
        }
        assert scraped == {f"tistis-{s}" for s in SERVICES}
        port = monitor["spec"]["endpoints"][0]["port"]
        for name in scraped:
            assert port in [p["name"] for p in by_kind(docs, "Service")[name]["spec"]["ports"]]
        job_label = monitor["spec"]["jobLabel"]
        assert {by_kind(docs, "Service")[n]["metadata"]["labels"][job_label] for n in scraped} == {
            "tistis"
        }, 'alerts select up{job="tistis"}'


class TestOverlays:
    def test_dev_secret_holds_placeholders_only(self) -> None:
        (secret,) = by_kind(render("dev"), "Secret").values()
        assert secret["metadata"]["name"] == "tistis-secrets"
        import base64

        values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert set(values) <= settings_env_names()
        assert not {"ANTHROPIC_API_KEY", "META_APP_SECRET", "WHATSAPP_ACCESS_TOKEN"} & set(values)

    def test_prod_renders_no_secret_and_pins_images(self) -> None:
        docs = render("prod")
        assert not by_kind(docs, "Secret"), "production secrets come from the secret store"
        for doc in docs:
            spec = pod_spec(doc)
            for c in spec["containers"] if spec else []:
                image = c["image"]
                assert re.search(r":\d+\.\d+\.\d+$", image), f"unpinned image {image}"

    def test_prod_routes_webhooks_and_the_operator_api_through_the_gateway_api(self) -> None:
        docs = render("prod")
        assert not by_kind(docs, "Ingress"), "ingress-nginx is retired: Gateway API routes"
        routes = by_kind(docs, "HTTPRoute")
        ingress_port = by_kind(docs, "Service")["tistis-ingress"]["spec"]["ports"][0]["port"]
        paths: dict[str, dict[str, Any]] = {}
        for route in routes.values():
            for rule in route["spec"]["rules"]:
                assert rule["backendRefs"] == [{"name": "tistis-ingress", "port": ingress_port}]
                for match in rule["matches"]:
                    paths[match["path"]["value"]] = rule
        assert set(paths) == {"/api/webhook", "/api/v1", "/api/v1/events/stream"}
        # the event stream is one long response: no gateway timeout cuts it
        assert paths["/api/v1/events/stream"]["timeouts"]["request"] == "0s"

    def test_overlays_use_their_own_namespace(self) -> None:
        for overlay, namespace in (("dev", "tistis-dev"), ("prod", "tistis")):
            for doc in render(overlay):
                if doc["kind"] != "Namespace":
                    assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
