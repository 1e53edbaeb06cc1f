"""examples/kubernetes: every manifest is valid Kubernetes, and every place where the
manifests meet the hub (its flags, ports, routes, config format, reload) agrees with the
hub itself."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.manifests import (KUBERNETES, MIXERHUB, Doc, container_port, extract_config,
                                 flags_of, hub_container, hub_routes, kubernetes_schema_errors,
                                 load_documents, name_of, pod_specs, port_of, selects,
                                 serve_arguments, serve_help_flags, validate_config)

MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
NAMESPACE = "mixerhub"


def _documents() -> list[Doc]:
    return [d for path in MANIFESTS for d in load_documents(path.read_text())]


DOCS = _documents()


def _one(kind: str, name: str) -> Doc:
    found = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"want one {kind}/{name}, found {len(found)}"
    return found[0]


def _containers(template: Doc) -> list[Doc]:
    return [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]


@pytest.mark.parametrize("doc", DOCS, ids=name_of)
def test_every_manifest_is_valid_for_kubernetes(doc: Doc) -> None:
    assert kubernetes_schema_errors(doc) == ""


def test_the_schema_check_refuses_a_broken_manifest() -> None:
    """The check above can fail: a misspelt field and a wrong type are both caught."""
    deployment = yaml.safe_load(yaml.safe_dump(_one("Deployment", "mixerhub")))
    deployment["spec"]["replica"] = 2
    assert "replica" in kubernetes_schema_errors(deployment)
    service = yaml.safe_load(yaml.safe_dump(_one("Service", "mixerhub")))
    service["spec"]["ports"][0]["port"] = "ninety"
    assert "port" in kubernetes_schema_errors(service)


def test_the_kustomization_lists_every_manifest_in_one_namespace() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    assert kustomization["namespace"] == NAMESPACE
    for doc in DOCS:
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:  # each file also applies on its own with kubectl apply -f
            assert doc["metadata"].get("namespace") == NAMESPACE, name_of(doc)
    images = {i["name"] for i in kustomization.get("images", [])}
    _, _, hub = hub_container(DOCS)
    assert hub["image"].split(":")[0] in images


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_folder(tmp_path: Path) -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True,
                              text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    docs = load_documents(rendered.stdout)
    assert sorted(map(name_of, docs)) == sorted(map(name_of, DOCS))
    for doc in docs:
        assert kubernetes_schema_errors(doc) == "", name_of(doc)


def test_the_configmap_holds_a_config_that_mixerhub_validate_accepts(tmp_path: Path) -> None:
    configmap = _one("ConfigMap", "mixerhub-config")
    files = extract_config(configmap, tmp_path / "config")
    assert all(f.suffix in (".yaml", ".yml") for f in files), "the hub loads *.yaml only"
    result = validate_config(tmp_path / "config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: ")


def test_mixerhub_validate_fails_on_a_broken_configmap(tmp_path: Path) -> None:
    """The check above can fail: a typo in a handler's params is refused."""
    configmap = yaml.safe_load(yaml.safe_dump(_one("ConfigMap", "mixerhub-config")))
    configmap["data"]["policy.yaml"] = configmap["data"]["policy.yaml"].replace(
        "redisServerUrl", "redisServerURL")
    extract_config(configmap, tmp_path / "config")
    result = validate_config(tmp_path / "config")
    assert result.returncode == 1
    assert "redisServerURL" in result.stdout


def _handlers(configmap: Doc) -> dict[str, Doc]:
    docs = [d for text in configmap["data"].values() for d in load_documents(text)]
    return {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "handler"}


def _service_port(name: str, port: int) -> Doc:
    service = _one("Service", name)
    assert port in [p["port"] for p in service["spec"]["ports"]], f"{name} has no port {port}"
    return service


def test_redisquota_and_kafka_handlers_point_at_services_of_the_example() -> None:
    handlers = _handlers(_one("ConfigMap", "mixerhub-config"))
    adapters = {spec["compiledAdapter"] for spec in handlers.values()}
    assert {"redisquota", "kafka"} <= adapters
    assert "memquota" not in adapters, "memquota counts per replica; use redisquota"
    for spec in handlers.values():
        if spec["compiledAdapter"] == "redisquota":
            host, port = spec["params"]["redisServerUrl"].rsplit(":", 1)
            _service_port(host, int(port))
        if spec["compiledAdapter"] == "kafka":
            for broker in spec["params"]["brokers"]:
                host, port = broker.rsplit(":", 1)
                _service_port(host, int(port))
            spool = spec["params"]["spoolDir"]
            _, template, hub = hub_container(DOCS)
            mounts = {m["mountPath"]: m["name"] for m in hub["volumeMounts"]}
            assert spool in mounts, "the Kafka spool needs a writable volume"
            volume = [v for v in template["spec"]["volumes"] if v["name"] == mounts[spool]]
            assert "emptyDir" in volume[0] or "persistentVolumeClaim" in volume[0]
    _, _, hub = hub_container(DOCS)
    backend = serve_arguments(hub).ratelimit_backend
    host, port = backend.removeprefix("redis://").rsplit(":", 1)
    _service_port(host, int(port))


def test_the_hub_container_uses_only_flags_that_serve_knows() -> None:
    _, _, hub = hub_container(DOCS)
    assert hub["command"] == ["mixerhub", "serve"]
    known = serve_help_flags()
    assert {"--config", "--grpc", "--http", "--admin"} <= known  # the help was read
    unknown = set(flags_of(hub["args"])) - known
    assert not unknown, f"mixerhub serve --help does not know {sorted(unknown)}"
    serve_arguments(hub)  # values parse too (a bad number or a missing value exits)


def test_probes_use_the_hubs_routes_on_its_http_port() -> None:
    workload, template, hub = hub_container(DOCS)
    args = serve_arguments(hub)
    routes = hub_routes()
    http_port = port_of(args.http)
    assert args.http.startswith("0.0.0.0:"), "the kubelet probes the pod's IP"
    assert hub["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert hub["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    for probe in ("readinessProbe", "livenessProbe"):
        assert container_port(hub, hub[probe]["httpGet"]["port"]) == http_port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == http_port
    assert annotations["prometheus.io/path"] == "/metrics" in routes
    assert container_port(hub, "grpc") == port_of(args.grpc)
    assert container_port(hub, "http") == http_port


def test_service_ports_reach_container_ports() -> None:
    services = [d for d in DOCS if d["kind"] == "Service"]
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        pods = [t for _, t in pod_specs(DOCS) if selects(selector, t["metadata"]["labels"])]
        assert pods, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for template in pods:
                numbers = []
                for container in template["spec"]["containers"]:
                    try:
                        numbers.append(container_port(container, target))
                    except AssertionError:
                        pass
                assert numbers, (f"Service {service['metadata']['name']} port "
                                 f"{port['name']}: no container port {target!r}")
    _, _, hub = hub_container(DOCS)
    args = serve_arguments(hub)
    ports = {p["name"]: p["port"] for p in _one("Service", "mixerhub")["spec"]["ports"]}
    assert ports == {"grpc": port_of(args.grpc), "http": port_of(args.http)}


def test_the_configmap_is_mounted_as_the_config_folder_so_reloads_work() -> None:
    _, template, hub = hub_container(DOCS)
    args = serve_arguments(hub)
    assert not args.no_watch, "the hub must watch its config folder"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = [m for m in hub["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert [m["mountPath"] for m in mounts] == args.config
    assert _one("ConfigMap", volumes[mounts[0]["name"]]["configMap"]["name"])
    for workload, template in pod_specs(DOCS):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for container in _containers(template):
            for mount in container.get("volumeMounts", []):
                # (a StatefulSet's claim templates are volumes too, not listed here)
                if "configMap" in volumes.get(mount["name"], {}):
                    # a subPath mount is a copy the kubelet never updates
                    assert "subPath" not in mount, f"{name_of(workload)} {mount}"
                    _one("ConfigMap", volumes[mount["name"]]["configMap"]["name"])


def test_the_hub_runs_several_replicas_under_a_disruption_budget() -> None:
    workload, template, hub = hub_container(DOCS)
    replicas = workload["spec"]["replicas"]
    assert replicas >= 2
    budgets = [d for d in DOCS if d["kind"] == "PodDisruptionBudget"
               and selects(d["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])]
    assert len(budgets) == 1
    budget = budgets[0]["spec"]
    allowed_down = budget.get("maxUnavailable", replicas - budget.get("minAvailable", 0))
    assert 0 < allowed_down < replicas
    assert workload["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(hub["resources"][kind])


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    """The namespace enforces `restricted`; a pod that breaks it would never start."""
    namespace = _one("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload, template in pod_specs(DOCS):
        pod = template["spec"]
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name_of(workload)
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        assert all("hostPath" not in v for v in pod.get("volumes", []))
        for container in _containers(template):
            sc = container.get("securityContext", {})
            where = f"{name_of(workload)} container {container['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("privileged"), where
            assert "memory" in container["resources"]["limits"], where
            assert container["resources"]["requests"], where
    _, _, hub = hub_container(DOCS)
    assert hub["securityContext"]["readOnlyRootFilesystem"] is True


def _bootstrap_command(text: str) -> list[str]:
    """The `mixerhub envoy-config …` command named in the bootstrap ConfigMap's comment
    (continuation lines joined)."""
    lines = [line.removeprefix("#").strip() for line in text.splitlines()
             if line.startswith("#")]
    start = next(i for i, line in enumerate(lines) if line.startswith("mixerhub envoy-config"))
    command = ""
    for line in lines[start:]:
        command += line.removesuffix("\\") + " "
        if not line.endswith("\\"):
            break
    return shlex.split(command)


def test_the_envoy_bootstrap_is_what_envoy_config_prints() -> None:
    path = KUBERNETES / "envoy-bootstrap.yaml"
    text = path.read_text()
    command = _bootstrap_command(text)
    printed = subprocess.run([str(MIXERHUB), *command[1:]], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    (configmap,) = load_documents(text)
    assert configmap["data"]["envoy.yaml"] == printed, (
        f"regenerate envoy.yaml with: {' '.join(command)}")


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_sidecar_wiring_matches_the_bootstrap() -> None:
    command = _bootstrap_command((KUBERNETES / "envoy-bootstrap.yaml").read_text())
    hub_host, hub_port = _option(command, "--hub").rsplit(":", 1)
    service, namespace = hub_host.split(".")[:2]
    assert namespace == NAMESPACE
    headless = _service_port(service, int(hub_port))
    assert headless["spec"].get("clusterIP") == "None", "sidecars should see every replica"
    app = _one("Deployment", "httpbin")["spec"]["template"]
    envoy = next(c for c in app["spec"]["containers"] if c["name"] == "envoy")
    upstream = next(c for c in app["spec"]["containers"] if c["name"] == "app")
    assert container_port(envoy, "http") == port_of(_option(command, "--listen"))
    env = {e["name"]: e.get("value") for e in upstream.get("env", [])}
    assert _option(command, "--upstream") == f"{env['HOST']}:{env['PORT']}"
    config_arg = envoy["args"][envoy["args"].index("-c") + 1]
    volumes = {v["name"]: v for v in app["spec"]["volumes"]}
    mount = next(m for m in envoy["volumeMounts"]
                 if config_arg.startswith(m["mountPath"] + "/"))
    configmap = _one("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    assert Path(config_arg).name in configmap["data"]


def test_envoy_accepts_the_bootstrap(tmp_path: Path) -> None:
    from tests.services.envoy import envoy_binary

    (configmap,) = load_documents((KUBERNETES / "envoy-bootstrap.yaml").read_text())
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(configmap["data"]["envoy.yaml"])
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(bootstrap),
                             "-l", "error"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kafka_runs_kraft_behind_its_bootstrap_service() -> None:
    kafka = _one("StatefulSet", "kafka")
    governing = _one("Service", kafka["spec"]["serviceName"])
    assert governing["spec"].get("clusterIP") == "None"
    pod = kafka["spec"]["template"]["spec"]
    # Service links would inject KAFKA_PORT etc., which the image reads as settings.
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert container["image"].startswith("apache/kafka:")
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    assert advertised.split(":")[0].endswith("." + governing["metadata"]["name"])
    assert port_of(advertised) == container_port(container, "kafka")
