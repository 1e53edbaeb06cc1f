"""Helpers of the deployment tests: reading manifests, validating them against the
Kubernetes schemas that the kubernetes-validate package ships, and what the hub itself
knows (its serve flags, its HTTP routes)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "examples" / "kubernetes"
# The oldest Kubernetes the manifests promise to work on; kubernetes-validate ships its
# schemas (1.25 … 1.37 in kubernetes-validate 1.37), so nothing is downloaded.
KUBERNETES_VERSION = "1.30.0"
MIXERHUB = Path(sys.executable).with_name("mixerhub")

Doc = dict[str, Any]


def load_documents(text: str) -> list[Doc]:
    """The non-empty YAML documents of ``text``."""
    return [d for d in yaml.safe_load_all(text) if d]


def kubernetes_schema_errors(doc: Doc) -> str:
    """'' when ``doc`` is valid for KUBERNETES_VERSION (strict: unknown fields are errors),
    else the reason. A kind without a schema is an error too."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{path}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        return str(exc.message)
    return ""


def name_of(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_specs(docs: Iterable[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod template) of every Deployment and StatefulSet."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield doc, doc["spec"]["template"]


def hub_container(docs: Iterable[Doc]) -> tuple[Doc, Doc, Doc]:
    """(workload, pod template, container) of the one container running ``mixerhub serve``."""
    found = [(w, t, c) for w, t in pod_specs(docs) for c in t["spec"]["containers"]
             if c.get("command", [])[:1] == ["mixerhub"]]
    assert len(found) == 1, f"want one mixerhub container, found {len(found)}"
    return found[0]


def serve_arguments(container: Doc) -> argparse.Namespace:
    """The container's command and args parsed by the real ``mixerhub`` parser (which
    exits on an unknown flag or a missing value)."""
    from mixerhub.cli import build_parser

    argv = [*container["command"][1:], *container.get("args", [])]
    return build_parser().parse_args(argv)


def serve_help_flags() -> set[str]:
    """Every ``--flag`` that ``mixerhub serve --help`` prints."""
    out = subprocess.run([str(MIXERHUB), "serve", "--help"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return {word.rstrip(",=") for word in out.replace("[", " ").replace("]", " ").split()
            if word.startswith("--")}


def flags_of(args: Iterable[str]) -> list[str]:
    """The ``--flag`` names in an argument list (``--flag=value`` or ``--flag value``)."""
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def hub_routes() -> set[str]:
    """The paths the hub's HTTP port routes (the real app, built without a hub)."""
    from mixerhub.metrics import Metrics
    from mixerhub.server.http import build_app

    app = build_app(Metrics(), lambda: True, debug=False)
    return {r.canonical for r in app.router.resources()}


def port_of(address: str) -> int:
    """The port of ``HOST:PORT``."""
    return int(address.rsplit(":", 1)[1])


def container_port(container: Doc, port: int | str) -> int:
    """The number of a container port given by number or by name."""
    for p in container.get("ports", []):
        if port in (p["containerPort"], p.get("name")):
            return int(p["containerPort"])
    raise AssertionError(f"container {container['name']} has no port {port!r}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def extract_config(configmap: Doc, folder: Path) -> list[Path]:
    """The ConfigMap's files written into ``folder`` (as the kubelet would mount them)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in configmap["data"].items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written


def validate_config(folder: Path) -> subprocess.CompletedProcess[str]:
    """``mixerhub validate FOLDER``, the real command."""
    return subprocess.run([str(MIXERHUB), "validate", str(folder)], capture_output=True,
                          text=True, timeout=120)
