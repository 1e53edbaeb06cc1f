"""What the diff tests share: configs written to a folder, recorded-check lines made by
the hub's own encoder, and a hand-computable traffic of 100,000 checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mixerhub.decisions import DecisionEvent, encode_event
from mixerhub.verdict import CheckOutcome, Verdict

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
OK, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, RESOURCE_EXHAUSTED = 0, 5, 7, 9, 8

HEAD = "apiVersion: config.istio.io/v1alpha2\n"


def denier(name: str, code: int, message: str) -> str:
    return (f"{HEAD}kind: handler\nmetadata: {{name: {name}, namespace: istio-system}}\n"
            f"spec: {{compiledAdapter: denier, params: {{status: {{code: {code}, "
            f"message: '{message}'}}}}}}\n")


def versions_list(name: str, versions: Iterable[str], provider: str = "") -> str:
    url = f", providerUrl: '{provider}'" if provider else ""
    return (f"{HEAD}kind: handler\nmetadata: {{name: {name}, namespace: istio-system}}\n"
            f"spec: {{compiledAdapter: listchecker, params: {{overrides: "
            f"[{', '.join(versions)}], blacklist: false{url}}}}}\n")


NOTHING = (f"{HEAD}kind: instance\nmetadata: {{name: nothing, namespace: istio-system}}\n"
           "spec: {compiledTemplate: checknothing}\n")
CALLER_VERSION = (f"{HEAD}kind: instance\nmetadata: {{name: caller-version, namespace: "
                  "istio-system}\nspec: {compiledTemplate: listentry, params: "
                  "{value: 'source.labels[\"version\"] | \"none\"'}}\n")


def rule(name: str, match: str, handler: str, instance: str, extra: str = "") -> str:
    return (f"{HEAD}kind: rule\nmetadata: {{name: {name}, namespace: istio-system}}\n"
            f"spec:\n  match: '{match}'\n  actions: [{{handler: {handler}, "
            f"instances: [{instance}]}}]\n{extra}")


def write_config(folder: Path, name: str, *documents: str) -> str:
    path = folder / name
    path.write_text("---\n".join(documents))
    return str(path)


def line(i: int, values: dict[str, Any], code: int = 0, rules: tuple[str, ...] = ()) -> bytes:
    """One recorded check as the hub writes it (--record-checks), with a newline."""
    outcome = CheckOutcome(Verdict(code, rules=rules))
    return encode_event(DecisionEvent(f"t-{i:x}", T0, values, outcome, 1)) + b"\n"


# ---- the hand-computed traffic -----------------------------------------------------------
# Every combination of path (5) × method (4) × caller version (5) × service (2) appears once
# in each run of 200 checks, so 100,000 checks hold each combination 500 times.

PATHS = ["/admin/a", "/internal/b", "/api/c", "/api/d", "/static/e"]
METHODS = ["GET", "POST", "DELETE", "PUT"]
VERSIONS = ["v1", "v2", "v3", "v4", "v5"]
SERVICES = ["ratings", "reviews"]
CHECKS = 100_000
RUNS = CHECKS // 200

BASE = [denier("deny-admin", PERMISSION_DENIED, "admin is closed"), NOTHING,
        rule("no-admin", 'request.path.startsWith("/admin")', "deny-admin", "nothing"),
        versions_list("known-versions", ["v1", "v2"]), CALLER_VERSION,
        rule("ratings-callers", 'destination.service.name == "ratings"', "known-versions",
             "caller-version")]
# The candidate closes /internal too, lets v3 call ratings, and freezes DELETEs from v5.
CANDIDATE = [denier("deny-admin", PERMISSION_DENIED, "admin is closed"), NOTHING,
             rule("no-admin", 'request.path.startsWith("/admin") || '
                  'request.path.startsWith("/internal")', "deny-admin", "nothing"),
             versions_list("known-versions", ["v1", "v2", "v3"]), CALLER_VERSION,
             rule("ratings-callers", 'destination.service.name == "ratings"',
                  "known-versions", "caller-version"),
             denier("deny-deletes", FAILED_PRECONDITION, "deletes are frozen"),
             rule("no-deletes", 'request.method == "DELETE" && '
                  'source.labels["version"] == "v5"', "deny-deletes", "nothing")]


def combination(i: int) -> tuple[str, str, str, str]:
    return (PATHS[i % 5], METHODS[(i // 5) % 4], VERSIONS[(i // 20) % 5],
            SERVICES[(i // 100) % 2])


def base_code(path: str, method: str, version: str, service: str) -> int:
    """The base config's verdict, by hand."""
    if path.startswith("/admin"):
        return PERMISSION_DENIED
    if service == "ratings" and version not in ("v1", "v2"):
        return NOT_FOUND
    return OK


def bag(i: int) -> dict[str, Any]:
    path, method, version, service = combination(i)
    return {"request.path": path, "request.method": method,
            "source.labels": {"app": "web", "version": version},
            "destination.service.name": service, "request.id": f"r-{i}",
            "request.time": T0 + dt.timedelta(microseconds=i),
            "request.headers": {"x-request-id": f"r-{i}", "authorization": "Bearer s"},
            "request.size": i % 7}


def write_traffic(path: Path, count: int = CHECKS) -> None:
    """``count`` checks recorded under the base config (so each records its base verdict)."""
    with open(path, "wb") as out:
        for i in range(count):
            out.write(line(i, bag(i), base_code(*combination(i))))
