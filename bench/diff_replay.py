"""``mixerhub diff`` throughput: recorded checks per second, from reading the traffic file
to the finished report (DESIGN §13), next to plain JSON-line parsing of the same file.

    .venv/bin/python bench/diff_replay.py [--checks 100000] [--repeat 3] [--unique 20000]

The traffic is written by the hub's own encoder (``mixerhub.decisions.encode_event``, the
``--record-checks`` format, secrets redacted): Istio-like check bags of 21 attributes
(~1.1 KB a line); 30 services, each called by 8 of 300 workloads and serving 20 paths of
its own, popularity Zipf-like at every level, so checks repeat as in real traffic
(request ids and times are unique per check); methods mostly GET. Base:
examples/quickstart (4 rules; its listchecker rule reads a label); candidate: the same
plus two rules (deny DELETE on reviews from v1 callers; deny /internal paths).

Rows (each timed ``--repeat`` times; median, with min–max):
- read lines: the file read line by line, nothing parsed (the floor);
- orjson / json per line: plain JSON-line parsing alone — the baseline;
- read_decisions: the public typed reader (mixerhub.decisions), for reference;
- mixerhub diff --jobs N: the command's own path (``mixerhub.diff.command.diff``), timed
  from reading the traffic to the finished report, rendering the table and the JSON
  included; loading the two configs before (a constant ~0.2 s) is not; with 2 jobs the
  file is replayed by two forked worker processes;
- every check unique: a worst case where every line has a request.path of its own, so
  no verdict is reused and every line is evaluated by both engines (``--unique`` lines).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from mixerhub.decisions import DecisionEvent, encode_event, read_decisions
from mixerhub.diff.command import DiffOptions, diff
from mixerhub.diff.render import render
from mixerhub.logs import configure
from mixerhub.verdict import CheckOutcome, Verdict

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "examples" / "quickstart")
EXTRA_RULES = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny-bench, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: not allowed}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: no-v1-deletes, namespace: istio-system}
spec:
  match: request.method == "DELETE" && destination.service.name == "reviews" && source.labels["version"] == "v1"
  actions: [{handler: deny-bench, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: no-internal, namespace: istio-system}
spec:
  match: (request.path | "/").startsWith("/internal")
  actions: [{handler: deny-bench, instances: [nothing]}]
"""
T0 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)


# ---- traffic -------------------------------------------------------------------------------

class Traffic:
    """Istio-like check bags. Services are called by a few workloads each and have their
    own paths; popularity is Zipf-like. ``unique`` gives every request a path of its own."""

    def __init__(self, seed: int = 7) -> None:
        rnd = self.rnd = random.Random(seed)
        self.workloads = [(f"app{i % 60}", f"v{1 + i % 3}", f"ns{i % 8}",
                           f"10.1.{i // 250}.{i % 250}") for i in range(300)]
        self.services = [f"svc{i}" for i in range(28)] + ["reviews", "ratings"]
        rnd.shuffle(self.services)
        kinds = ["/api/v1/items", "/api/v2/orders", "/static", "/internal/stats", "/admin/users"]
        self.paths = {s: [f"{kinds[(i + k) % len(kinds)]}/{s}/{k}" for k in range(20)]
                      for i, s in enumerate(self.services)}
        self.callers = {s: rnd.sample(self.workloads, 8) for s in self.services}
        self.methods = ["GET"] * 16 + ["POST"] * 2 + ["PUT", "DELETE"]

    def _zipf(self, items: list[Any]) -> Any:
        return self.rnd.choices(items, [1 / (r + 1) for r in range(len(items))])[0]

    def bag(self, i: int, unique: bool) -> dict[str, Any]:
        rnd = self.rnd
        service = self._zipf(self.services)
        app, version, ns, ip = self._zipf(self.callers[service])
        path = f"/api/v1/items/{service}/{i}" if unique else self._zipf(self.paths[service])
        return {
            "source.ip": ipaddress.ip_address(ip), "source.namespace": ns,
            "source.uid": f"kubernetes://{app}-{version}.{ns}",
            "source.principal": f"cluster.local/ns/{ns}/sa/{app}",
            "source.labels": {"app": app, "version": version},
            "destination.service.name": service, "destination.namespace": "default",
            "destination.service.host": f"{service}.default.svc.cluster.local",
            "destination.port": 8080, "request.path": path,
            "request.method": rnd.choice(self.methods),
            "request.host": f"{service}.default", "request.scheme": "http",
            "request.useragent": "Envoy/1.40", "request.id": f"req-{i:08x}",
            "request.time": T0 + dt.timedelta(microseconds=i * 997),
            "request.headers": {":authority": f"{service}.default", ":path": path,
                                "x-request-id": f"req-{i:08x}", "authorization": "Bearer t",
                                "user-agent": "Envoy/1.40"},
            "context.protocol": "http", "context.reporter.kind": "inbound",
            "connection.mtls": True, "request.size": rnd.choice([0, 0, 120, 512]),
        }

    def write(self, path: Path, count: int, unique: bool = False) -> None:
        verdict = CheckOutcome(Verdict(rules=("ratings-callers.istio-system",)))
        with open(path, "wb") as out:
            for i in range(count):
                event = DecisionEvent(f"b-{i:x}", T0, self.bag(i, unique), verdict, 1)
                out.write(encode_event(event) + b"\n")


# ---- rows ----------------------------------------------------------------------------------
# Each row returns (lines, seconds): seconds of what the row measures.

def read_lines(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with open(path, "rb") as f:
        count = sum(1 for _ in f)
    return count, time.perf_counter() - started


def parse_lines(loads: Callable[[bytes], Any]) -> Callable[[Path], tuple[int, float]]:
    def run(path: Path) -> tuple[int, float]:
        started = time.perf_counter()
        with open(path, "rb") as f:
            count = sum(1 for line in f if loads(line) is not None)
        return count, time.perf_counter() - started
    return run


def typed_reader(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(1 for _ in read_decisions(path))
    return count, time.perf_counter() - started


class DiffRow:
    """`mixerhub diff` as the command runs it (``diff()``), timed from reading the traffic
    to the finished report (its ``seconds``) plus rendering the table and the JSON."""

    def __init__(self, extra: Path, jobs: int) -> None:
        self.candidate = (QUICKSTART, str(extra))
        self.jobs = jobs
        self.last: Any = None

    def __call__(self, path: Path) -> tuple[int, float]:
        report = diff(DiffOptions((QUICKSTART,), self.candidate, (str(path),), jobs=self.jobs))
        started = time.perf_counter()
        render(report)
        json.dumps(report.to_json())
        self.last = report
        return report.checks, report.seconds + time.perf_counter() - started


def timed(fn: Callable[[Path], tuple[int, float]], path: Path, repeat: int
          ) -> tuple[int, list[float]]:
    rates, count = [], 0
    for _ in range(repeat):
        count, seconds = fn(path)
        rates.append(count / seconds)
    return count, rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=100_000)
    parser.add_argument("--unique", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure("error")
    with tempfile.TemporaryDirectory(prefix="mixerhub-diff-bench-") as tmp:
        folder = Path(tmp)
        traffic, unique = folder / "checks.jsonl", folder / "unique.jsonl"
        print(f"… writing {args.checks:,} + {args.unique:,} recorded checks", flush=True)
        Traffic().write(traffic, args.checks)
        Traffic(seed=8).write(unique, args.unique, unique=True)
        extra = folder / "extra.yaml"
        extra.write_text(EXTRA_RULES)
        rows: list[tuple[str, Callable[[Path], tuple[int, float]], Path]] = [
            ("read lines (no parsing)", read_lines, traffic),
            ("orjson.loads per line (baseline)", parse_lines(orjson.loads), traffic),
            ("json.loads per line", parse_lines(json.loads), traffic),
            ("read_decisions (typed reader)", typed_reader, traffic),
            ("mixerhub diff --jobs 1", DiffRow(extra, 1), traffic),
            ("mixerhub diff --jobs 2", DiffRow(extra, 2), traffic),
            ("diff --jobs 1, every check unique", DiffRow(extra, 1), unique),
            ("diff --jobs 2, every check unique", DiffRow(extra, 2), unique)]
        results = []
        for label, fn, path in rows:
            print(f"… {label}", flush=True)
            results.append((label, *timed(fn, path, args.repeat)))
            if isinstance(fn, DiffRow):
                r = fn.last
                print(f"  {r.groups:,} groups, {r.evaluations:,} engine evaluations, "
                      f"{r.changed:,} changed", flush=True)
        size = traffic.stat().st_size / args.checks
    _print(results, size, args.repeat)
    return 0


def _print(results: list[tuple[str, int, list[float]]], line_bytes: float, repeat: int) -> None:
    print(f"\n`mixerhub diff` replay, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores, lines of {line_bytes:,.0f} "
          f"bytes; median of {repeat} (min–max)\n")
    print(f"{'row':<36}{'lines':>9}{'lines/s':>11}{'min–max':>22}")
    for label, count, rates in results:
        spread = f"{min(rates):,.0f}–{max(rates):,.0f}"
        print(f"{label:<36}{count:>9,}{statistics.median(rates):>11,.0f}{spread:>22}")


if __name__ == "__main__":
    sys.exit(main())
