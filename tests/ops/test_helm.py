"""examples/kubernetes/helm/mixerhub: `helm template` renders valid Kubernetes, with the
same hub wiring as the plain manifests (flags, probes, ports, config folder)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.ops.manifests import (KUBERNETES, KUBERNETES_VERSION, Doc, container_port,
                                 extract_config, flags_of, hub_container, hub_routes,
                                 kubernetes_schema_errors, load_documents, name_of, port_of,
                                 selects, serve_arguments, serve_help_flags, validate_config)
from tests.services.helm import require_helm

CHART = KUBERNETES / "helm" / "mixerhub"


def _template(*options: str) -> list[Doc]:
    helm = require_helm()
    result = subprocess.run([str(helm), "template", "hub", str(CHART), "--namespace", "mesh",
                             "--kube-version", KUBERNETES_VERSION, *options],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return load_documents(result.stdout)


def test_helm_lint_passes() -> None:
    result = subprocess.run([str(require_helm()), "lint", str(CHART)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_default_render_is_valid_kubernetes() -> None:
    docs = _template()
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service",
        "ServiceAccount"]
    for doc in docs:
        assert kubernetes_schema_errors(doc) == "", name_of(doc)
        assert doc["metadata"]["namespace"] == "mesh"


def test_the_default_render_wires_the_hub_like_the_manifests(tmp_path: Path) -> None:
    docs = _template()
    workload, template, hub = hub_container(docs)
    assert workload["spec"]["replicas"] >= 2
    assert set(flags_of(hub["args"])) <= serve_help_flags()
    args = serve_arguments(hub)
    routes = hub_routes()
    assert hub["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert hub["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert container_port(hub, hub["readinessProbe"]["httpGet"]["port"]) == port_of(args.http)
    assert int(template["metadata"]["annotations"]["prometheus.io/port"]) == port_of(args.http)
    mount = next(m for m in hub["volumeMounts"] if m["mountPath"] == args.config[0])
    assert "subPath" not in mount
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
    configmap = next(d for d in docs if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"] == volume["configMap"]["name"])
    extract_config(configmap, tmp_path / "config")
    result = validate_config(tmp_path / "config")
    assert result.returncode == 0, result.stdout + result.stderr
    for service in (d for d in docs if d["kind"] == "Service"):
        assert selects(service["spec"]["selector"], template["metadata"]["labels"])
        for port in service["spec"]["ports"]:
            assert container_port(hub, port["targetPort"]) == port["port"]


def test_values_change_replicas_flags_and_config(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text((KUBERNETES / "hub-config.yaml").read_text())
    (hub_config,) = load_documents(extra.read_text())
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "replicaCount": 3, "extraArgs": ["--max-inflight-checks=500"],
        "ports": {"grpc": 19091, "http": 19093}, "headlessService": False,
        "config": {"files": hub_config["data"]}}))
    docs = _template("--values", str(values))
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Service"] == ["hub-mixerhub"]
    workload, _, hub = hub_container(docs)
    assert workload["spec"]["replicas"] == 3
    args = serve_arguments(hub)
    assert args.max_inflight_checks == 500
    assert (port_of(args.grpc), port_of(args.http)) == (19091, 19093)
    assert container_port(hub, "http") == 19093
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    assert configmap["data"] == hub_config["data"]
    for doc in docs:
        assert kubernetes_schema_errors(doc) == "", name_of(doc)
