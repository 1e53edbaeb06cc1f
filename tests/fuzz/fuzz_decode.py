"""Fuzz the hub's request decoding through the real handlers (atheris, coverage-guided).

Each payload's first byte picks the entry point, the rest is the request body, handed to
the same code the servers call: Mixer ``Check`` and ``Report`` (``MixerService``), Envoy's
ext_authz ``Check`` (``AuthorizationService``), one access-log stream message (the
per-message part of ``AccessLogService``) and ``POST /v1/check`` (``CheckApi``) — behind
a real policy engine serving a small config (denier, listchecker, header operations, a
stdio log to /dev/null), with the decision cache on.

A payload may be refused with one of the hub's own errors (``MixerhubError``: what the
gRPC boundary turns into INVALID_ARGUMENT and counts); anything else is a finding, and so
is resident memory growing more than 10 % after warm-up.

    # the CI run (seconds; tests/fuzz/test_fuzz.py runs it)
    python tests/fuzz/fuzz_decode.py -runs=3000 -seed=1
    # the long run (docs/operations.md; ~90 s on 2 cores)
    python tests/fuzz/fuzz_decode.py -runs=1000000 -max_len=2048 -seed=1 CORPUS_DIR
    # without atheris: random mutations of the seeds, same checks
    python tests/fuzz/fuzz_decode.py --random 100000

Own options (before libFuzzer's): ``--warmup=N`` payloads before the memory baseline is
taken (default: a fifth of ``-runs``, at most 200,000), ``--every=N`` payloads between
progress lines (default 100,000, or a tenth of the run when shorter).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

MAX_GROWTH = 0.10
CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny-admin, namespace: istio-system}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: no admin}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: no-admin, namespace: istio-system}
spec:
  match: (request.path | "/").startsWith("/admin") || source.ip == ip("10.0.0.66")
  actions: [{handler: deny-admin, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: known-versions, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params: {overrides: ["v1", "v2"], blacklist: false}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: caller-version, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params: {value: 'source.labels["version"] | "unknown"'}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: ratings-callers, namespace: istio-system}
spec:
  match: (destination.service.name | "") == "ratings" && request.size | 0 < 1000000
  actions: [{handler: known-versions, instances: [caller-version]}]
  requestHeaderOperations:
  - name: x-user
    values: ['request.headers["x-user"] | "anonymous"']
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: sink, namespace: istio-system}
spec:
  compiledAdapter: stdio
  params: {logStream: FILE, outputPath: /dev/null}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: accesslog, namespace: istio-system}
spec:
  compiledTemplate: logentry
  params:
    severity: '"info"'
    timestamp: request.time | timestamp("2026-01-01T00:00:00Z")
    variables:
      path: request.path | ""
      code: response.code | 0
      latency: response.duration | "0ms"
      peer: source.ip | ip("0.0.0.0")
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: telemetry, namespace: istio-system}
spec:
  match: context.protocol | "http" == "http"
  actions: [{handler: sink, instances: [accesslog]}]
"""


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemoryGrowth(AssertionError):
    """Resident memory grew past the bound after warm-up."""


class Progress:
    """Counts payloads, takes the memory baseline after warm-up, prints progress."""

    def __init__(self, runs: int, warmup: int, every: int,
                 accepted: dict[str, int] | None = None) -> None:
        self.runs, self.warmup, self.every = runs, warmup, every
        self.accepted = accepted if accepted is not None else {}
        self.count = self.rejected = 0
        self.base = self.peak_growth = 0.0
        self.started = time.monotonic()

    def done_one(self, rejected: bool) -> None:
        self.count += 1
        self.rejected += rejected
        if self.count == self.warmup:
            self.base = rss_bytes()
            print(f"warm-up done at {self.count:,} payloads: rss {self.base / 2**20:.1f} MiB",
                  flush=True)
        if self.count % self.every == 0 or self.count == self.runs:
            self.report()

    def report(self) -> None:
        rss = rss_bytes()
        growth = (rss - self.base) / self.base if self.base else 0.0
        self.peak_growth = max(self.peak_growth, growth)
        rate = self.count / max(1e-9, time.monotonic() - self.started)
        print(f"{self.count:,} payloads ({rate:,.0f}/s): {self.rejected:,} refused as "
              f"malformed, 0 unhandled; rss {rss / 2**20:.1f} MiB, growth after warm-up "
              f"{growth:+.1%}", flush=True)
        if self.base and growth > MAX_GROWTH:
            raise MemoryGrowth(f"rss grew {growth:.1%} after warm-up (limit {MAX_GROWTH:.0%})")
        if self.count == self.runs:
            served = ", ".join(f"{name} {n:,}" for name, n in self.accepted.items())
            print(f"done: {self.count:,} payloads, no crash, no unhandled exception, "
                  f"peak rss growth after warm-up {self.peak_growth:+.1%}; answered "
                  f"(not refused) by entry point: {served}", flush=True)


class Target:
    """The hub's handlers over a running policy engine, called synchronously."""

    def __init__(self) -> None:
        from mixerhub.config.manager import ConfigManager
        from mixerhub.envoy.authz import AuthorizationService
        from mixerhub.errors import MixerhubError
        from mixerhub.logs import configure, get_logger
        from mixerhub.metrics import Metrics
        from mixerhub.plugins import load_plugins
        from mixerhub.server.checkapi import CheckApi
        from mixerhub.server.mixer import MixerService

        configure("critical")  # evaluation failures are logged per request: keep it quiet
        self.refusals: tuple[type[BaseException], ...] = (MixerhubError,)
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory(prefix="mixerhub-fuzz-")
        config = Path(self.folder.name, "policy.yaml")
        config.write_text(CONFIG)
        metrics, log = Metrics(), get_logger("fuzz")
        self.policy: Any = None
        manager = ConfigManager([str(config)], load_plugins(), metrics, self._use,
                                cache_size=1000)
        self.loop.run_until_complete(manager.load())
        manifest = manager.snapshot.config.manifest  # type: ignore[union-attr]
        mixer = MixerService(lambda: self.policy, metrics, log)
        authz = AuthorizationService(lambda: self.policy, lambda: manifest, metrics, log)
        api = CheckApi(lambda: self.policy, lambda: manifest, metrics, log)
        self.entries: list[Callable[[bytes], Coroutine[Any, Any, Any]]] = [
            mixer.check, mixer.report, authz.check, self._access_log, api._check]
        self.names = ("mixer_check", "mixer_report", "envoy_authz", "envoy_als", "http_check")
        self.accepted = dict.fromkeys(self.names, 0)

    def _use(self, policy: Any) -> None:
        self.policy = policy

    async def _access_log(self, raw: bytes) -> None:
        from envoy.service.accesslog.v3 import als_pb2

        from mixerhub.envoy.accesslog import entry_bags
        from mixerhub.server.guard import parse

        message = parse(als_pb2.StreamAccessLogsMessage, raw)
        await self.policy.report(entry_bags(message, {}))

    def __call__(self, data: bytes) -> bool:
        """Run one payload; True when the hub refused it with its own error."""
        if not data:
            return False
        which = data[0] % len(self.entries)
        try:
            self.loop.run_until_complete(self.entries[which](data[1:]))
        except self.refusals:
            return True
        self.accepted[self.names[which]] += 1
        return False


def seeds() -> list[bytes]:
    """Well-formed payloads for each entry point, so mutations start deep inside."""
    from envoy.service.accesslog.v3 import als_pb2
    from envoy.service.auth.v3 import external_auth_pb2

    from mixerhub.api.mixer.v1 import check_pb2, report_pb2
    from mixerhub.attributes.compression import Encoder

    encoder = Encoder()
    values: dict[str, Any] = {
        "request.path": "/admin/x", "request.method": "GET", "request.size": 120,
        "source.ip": ipaddress.ip_address("10.0.0.66"), "destination.service.name": "ratings",
        "source.labels": {"version": "v3", "app": "reviews"},
        "request.headers": {"x-user": "alice", ":authority": "ratings"},
        "request.time": dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc),
        "response.duration": dt.timedelta(milliseconds=12), "response.code": 200,
        "connection.mtls": True, "context.protocol": "http", "custom.word": "not global",
    }
    check = check_pb2.CheckRequest(attributes=encoder.encode(values),
                                   global_word_count=encoder.global_word_count,
                                   deduplication_id="d-1")
    check.quotas["requestcount"].amount = 1
    shared: list[str] = []
    report = report_pb2.ReportRequest(
        attributes=[encoder.encode(values, shared),
                    encoder.encode({"response.code": 503, "request.path": "/b"}, shared)],
        default_words=shared, global_word_count=encoder.global_word_count)
    authz = external_auth_pb2.CheckRequest()
    http = authz.attributes.request.http
    http.method, http.path, http.host = "GET", "/admin?x=1", "ratings"
    http.headers["x-user"] = "bob"
    authz.attributes.source.address.socket_address.address = "10.0.0.66"
    authz.attributes.context_extensions["destination.service.name"] = "ratings"
    als = als_pb2.StreamAccessLogsMessage()
    entry = als.http_logs.log_entry.add()
    entry.request.path, entry.response.response_code.value = "/a", 200
    entry.common_properties.downstream_remote_address.socket_address.address = "10.1.1.1"
    body = json.dumps({"attributes": {"request.path": "/admin", "source.ip": "10.0.0.66",
                                      "request.headers": {"x-user": "carol"}},
                       "quotas": {"requestcount": {"amount": 2}}}).encode()
    return [bytes([0]) + check.SerializeToString(), bytes([1]) + report.SerializeToString(),
            bytes([2]) + authz.SerializeToString(), bytes([3]) + als.SerializeToString(),
            bytes([4]) + body]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """One random edit: flip, insert, delete, duplicate a span, or splice another seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(5)
        at = rng.randrange(len(buf) + 1)
        if choice == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buf[at:at] = bytes([rng.randrange(256)])
        elif choice == 2 and len(buf) > 1:
            del buf[at:at + rng.randint(1, 8)]
        elif choice == 3 and buf:
            span = buf[at:at + rng.randint(1, 16)]
            buf[at:at] = span
        else:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:at] + other[cut:]
    return bytes(buf[:2048])


def random_run(runs: int, seed: int = 1, warmup: int | None = None,
               every: int | None = None) -> Progress:
    """The fuzz loop without atheris: mutations of the seeds, same checks."""
    target, pool = Target(), seeds()
    progress = Progress(runs, warmup or _default_warmup(runs), every or _default_every(runs),
                        target.accepted)
    rng = random.Random(seed)
    for _ in range(runs):
        progress.done_one(target(mutate(rng.choice(pool), rng, pool)))
    return progress


def _default_warmup(runs: int) -> int:
    return max(1, min(200_000, runs // 5))


def _default_every(runs: int) -> int:
    return max(1, min(100_000, runs // 10))


def _own_flag(argv: list[str], name: str) -> int | None:
    for arg in list(argv):
        if arg.startswith(f"--{name}="):
            argv.remove(arg)
            return int(arg.split("=", 1)[1])
    return None


def main(argv: list[str]) -> None:
    warmup, every = _own_flag(argv, "warmup"), _own_flag(argv, "every")
    if len(argv) > 1 and argv[1] == "--random":
        runs = int(argv[2]) if len(argv) > 2 else 100_000
        random_run(runs, warmup=warmup, every=every)
        return
    import atheris

    with atheris.instrument_imports(include=["mixerhub"]):
        target = Target()
        pool = seeds()
    found = re.search(r"^-runs=(\d+)$", "\n".join(argv), re.M)
    runs = int(found.group(1)) if found else 0
    progress = Progress(runs, warmup or _default_warmup(runs or 1_000_000),
                        every or _default_every(runs or 1_000_000), target.accepted)
    corpora = [a for a in argv[1:] if not a.startswith("-")]
    if not corpora:  # start from the seeds in a throw-away corpus
        corpora = [tempfile.mkdtemp(prefix="mixerhub-fuzz-corpus-")]
        argv.append(corpora[0])
    folder = Path(corpora[0])
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        for i, payload in enumerate(pool):
            (folder / f"seed-{i}").write_bytes(payload)

    def one(data: bytes) -> None:
        progress.done_one(target(data))

    atheris.Setup(argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
