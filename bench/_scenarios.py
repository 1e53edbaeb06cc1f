"""The scenarios of bench/compare.py. Each takes the run's :class:`Context` and returns its
rows; a row says what it covers, and HTTP rows carry a fixed-rate result (fortio) and a
max-throughput result (wrk). A scenario whose peer cannot be had raises :class:`Skip`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import _peers
import envoy_filters
from _loadgen import fortio_fixed, wrk_max
from _peers import CEL_RUST, FORTIO, OPA_ENVOY, RATELIMIT, Peer

Row = dict[str, Any]
ALICE = {"x-user": "alice"}  # fortio's fixed-rate runs: every request the same user


class Skip(Exception):
    """The scenario cannot run here; the message says why."""


class Ui(Protocol):
    def phase(self, label: str, seconds: float | None, work: Callable[[], Any]) -> Any: ...

    def note(self, text: str) -> None: ...


@dataclass
class Settings:
    quick: bool
    duration: float  # seconds of each measured phase
    warmup: float
    rate: float  # fixed-rate requests/s
    connections: int
    provision: bool  # build missing peers (else skip what is missing)


@dataclass
class Context:
    settings: Settings
    folder: Path
    ui: Ui
    exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _stack: envoy_filters.Stack | None = None
    _ready: dict[str, str | None] = field(default_factory=dict)

    def stack(self) -> envoy_filters.Stack:
        """The upstream Envoy and the hub (one-rule policy), started on first use."""
        if self._stack is None:
            self._stack = self.ui.phase("starting the upstream Envoy and the hub", None,
                                        lambda: self.exits.enter_context(
                                            envoy_filters.shared_stack()))
        return self._stack

    def missing(self, peer: Peer) -> str | None:
        """None when the peer is there (built now if allowed), else why it is not."""
        if peer.name not in self._ready:
            if peer.path.exists():
                self._ready[peer.name] = None
            elif not self.settings.provision:
                self._ready[peer.name] = f"{peer.name} not provisioned (--no-provision)"
            else:
                self._ready[peer.name] = self.ui.phase(
                    f"provisioning {peer.name} {peer.version}", None,
                    lambda: _peers.provision(peer, self.ui.note))
        return self._ready[peer.name]


# ---- HTTP measuring ------------------------------------------------------------------------

def measure_http(ctx: Context, name: str, url: str, script: Path | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Warm-up (wrk), fixed rate (fortio), max throughput (wrk) against ``url``."""
    s = ctx.settings
    warm = ctx.ui.phase(f"{name}: warm-up", s.warmup,
                        lambda: wrk_max(url, s.warmup, s.connections, script, headers))
    fixed = None
    if ctx.missing(FORTIO) is None:
        fixed = ctx.ui.phase(f"{name}: {s.rate:g} rps (fortio)", s.duration, lambda: fortio_fixed(
            FORTIO.path, url, s.rate, s.duration, s.connections, {**ALICE, **(headers or {})}))
    top = ctx.ui.phase(f"{name}: max throughput (wrk)", s.duration,
                       lambda: wrk_max(url, s.duration, s.connections, script, headers))
    return {"fixed": fixed, "max": top, "warmup_requests": warm["requests"]}


def http_row(row_id: str, scenario: str, label: str, covers: str, result: dict[str, Any],
             peer: str | None = None, **extra: Any) -> Row:
    return {"id": row_id, "scenario": scenario, "label": label, "covers": covers,
            "kind": "http", "unit": "requests/s", "value": result["max"]["rps"], **result,
            "peer": peer, "extra": extra}


def status_of(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_authz(url: str, who: str) -> None:
    """The allow rule holds: alice passes, mallory gets 403."""
    got = (status_of(url, ALICE), status_of(url, {"x-user": "mallory"}))
    if got != (200, 403):
        raise RuntimeError(f"{who}: alice/mallory answered {got}, expected (200, 403)")


def url_of(port: int, path: str = "/bench") -> str:
    return f"http://127.0.0.1:{port}{path}"


# ---- Envoy scenarios ----------------------------------------------------------------------

def envoy_alone(ctx: Context) -> list[Row]:
    stack = ctx.stack()
    with envoy_filters.scenario_envoy(stack, "alone") as port:
        result = measure_http(ctx, "Envoy alone", url_of(port), stack.script)
    return [http_row("envoy_alone", "envoy_alone", "Envoy alone",
                     "Envoy (2 workers, router only) → upstream Envoy (direct_response)", result)]


def _hub_filter(ctx: Context, mode: str, row_id: str, label: str, covers: str) -> list[Row]:
    stack = ctx.stack()
    http = stack.ports["http"]
    with envoy_filters.scenario_envoy(stack, mode) as port:
        check_authz(url_of(port), label)
        before = envoy_filters.hub_checks(http)
        result = measure_http(ctx, label, url_of(port), stack.script)
        sent = result["warmup_requests"] + result["max"]["requests"] + (
            result["fixed"] or {}).get("requests", 0)
        per_request = (envoy_filters.hub_checks(http) - before) / max(1, sent)
    peer = "ext_authz_opa_envoy" if mode == "ext_authz" else None
    return [http_row(row_id, mode, label, covers, result, peer,
                     hub_checks_per_request=round(per_request, 4))]


def ext_authz(ctx: Context) -> list[Row]:
    return _hub_filter(ctx, "ext_authz", "ext_authz_hub", "Envoy + ext_authz + mixerhub",
                       "one gRPC Check per request into the hub (one-rule policy: deny "
                       "x-user mallory)")


def lua(ctx: Context) -> list[Row]:
    return _hub_filter(ctx, "lua", "lua_hub", "Envoy + Lua filter + mixerhub",
                       "Lua decision cache in Envoy; wrk: 95 % repeated users, 5 % new "
                       "(a hub call each); fortio: one user")


def opa_envoy(ctx: Context) -> list[Row]:
    reason = ctx.missing(OPA_ENVOY)
    if reason:
        raise Skip(reason)
    stack = ctx.stack()
    with _peers.opa_envoy_service(ctx.folder) as grpc, \
            envoy_filters.scenario_envoy(stack, "ext_authz", hub_grpc=grpc) as port:
        check_authz(url_of(port), "OPA-Envoy")
        result = measure_http(ctx, "Envoy + ext_authz + OPA-Envoy", url_of(port), stack.script)
    return [http_row("ext_authz_opa_envoy", "opa_envoy", "Envoy + ext_authz + OPA-Envoy",
                     f"one gRPC Check per request into OPA-Envoy {OPA_ENVOY.version} "
                     "(the same rule in Rego)", result)]


# ---- rate limits ----------------------------------------------------------------------------

DESCRIPTORS = """\
# bench/compare.py: read by envoyproxy/ratelimit and by mixerhub, unchanged.
domain: bench
descriptors:
  - key: user                      # every user: far above what the machine can send
    rate_limit: {unit: second, requests_per_unit: 100000000}
  - key: user
    value: precheck                # the correctness pre-check: 5 an hour
    rate_limit: {unit: hour, requests_per_unit: 5}
"""


def ratelimit_bootstrap(stack: envoy_filters.Stack, service: int) -> Callable[[int, int], str]:
    import yaml

    from mixerhub.envoy.bootstrap import EnvoyOptions, bootstrap

    def make(port: int, admin: int) -> str:
        config = bootstrap(EnvoyOptions(
            hub=f"127.0.0.1:{service}", listen=f"127.0.0.1:{port}",
            upstream=f"127.0.0.1:{stack.ports['up']}", admin=f"127.0.0.1:{admin}",
            ratelimit=True, ratelimit_domain="bench", ratelimit_headers={"x-user": "user"}))
        manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]
        manager.pop("access_log")
        manager["http_filters"] = manager["http_filters"][1:]  # rate limit + router only
        return yaml.safe_dump(config)
    return make


def check_limits(url: str, redis: Any, who: str) -> dict[str, int]:
    """With the 5-an-hour descriptor, 8 requests: 5 pass, 3 are limited (429)."""
    redis.call("FLUSHALL")
    codes = [status_of(url, {"x-user": "precheck"}) for _ in range(8)]
    redis.call("FLUSHALL")
    if codes.count(200) != 5 or codes.count(429) != 3:
        raise RuntimeError(f"{who} pre-check: 8 requests at a limit of 5 gave {codes}")
    return {"passed": 5, "limited": 3}


@contextlib.contextmanager
def _redis(folder: Path) -> Iterator[Any]:
    import shutil

    if shutil.which("redis-server") is None:
        raise Skip("redis-server not installed (tests/services/provision_redis.sh)")
    from tests.services.redis import RedisServer

    (folder / "redis").mkdir(exist_ok=True)
    server = RedisServer(folder / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _hub_rls(folder: Path, config: Path, redis_url: str) -> Iterator[int]:
    grpc, http = _peers.free_port(), _peers.free_port()
    hub = envoy_filters.start_hub(config, grpc, http,
                                  ("--ratelimit-backend", redis_url, "--no-watch"))
    try:
        yield grpc
    finally:
        envoy_filters.stop(hub)


def ratelimit(ctx: Context) -> list[Row]:
    reason = ctx.missing(RATELIMIT)
    if reason:
        raise Skip(reason)
    stack = ctx.stack()
    config = ctx.folder / "bench-ratelimit.yaml"
    config.write_text(DESCRIPTORS)
    rows = []
    with _redis(ctx.folder) as redis:
        services: list[tuple[str, str, Callable[[], Any], str | None]] = [
            ("ratelimit_peer", "Envoy + ratelimit + envoyproxy/ratelimit",
             lambda: _peers.ratelimit_service(ctx.folder, config, redis.port), None),
            ("ratelimit_hub", "Envoy + ratelimit + mixerhub",
             lambda: _hub_rls(ctx.folder, config, redis.url), "ratelimit_peer")]
        for row_id, label, start, peer in services:
            with start() as grpc, envoy_filters.scenario_envoy(
                    stack, "ratelimit", make_bootstrap=ratelimit_bootstrap(stack, grpc)) as port:
                precheck = check_limits(url_of(port), redis, label)
                result = measure_http(ctx, label, url_of(port), stack.script)
            who = "mixerhub" if peer else f"envoyproxy/ratelimit {RATELIMIT.version}"
            rows.append(http_row(
                row_id, "ratelimit", label,
                f"Envoy's rate-limit filter → {who}, one ShouldRateLimit per request, "
                "counters in one Redis, same descriptor file", result, peer, precheck=precheck))
    return rows


# ---- the Python proxy --------------------------------------------------------------------------

def proxy(ctx: Context) -> list[Row]:
    import proxy as python_proxy

    rows = []
    with python_proxy.upstream_and_hub() as ports:
        result = measure_http(ctx, "aiohttp upstream, direct", url_of(ports[0], "/ratings/0"),
                              headers=ALICE)
        rows.append(http_row("proxy_direct", "proxy", "aiohttp upstream, direct",
                             "load → a minimal aiohttp app (the proxy's upstream)", result))
        with python_proxy.proxy(ports, ()) as port:
            result = measure_http(ctx, "Python proxy + mixerhub", url_of(port, "/ratings/0"),
                                  headers=ALICE)
        rows.append(http_row("proxy_hub", "proxy", "Python proxy + mixerhub (cache hits)",
                             "load → mixerhub proxy (check cache hits, reports batched) → "
                             "aiohttp upstream", result, "proxy_direct"))
    return rows


# ---- Kafka records ------------------------------------------------------------------------------

def kafka(ctx: Context) -> list[Row]:
    import asyncio

    import kafka_records
    from tests.services import kafka as services

    apache = not ctx.settings.quick and services.classpath_file().exists()
    kind = "apache" if apache else "tansu"
    total = 20_000 if ctx.settings.quick else 200_000
    broker = ctx.ui.phase(f"starting {kind} (Kafka protocol broker)", None,
                          lambda: kafka_records.start_broker(kind))
    try:
        hub = ctx.ui.phase(f"hub: {total:,} records, Report → Kafka ack", None,
                           lambda: kafka_records.hub_run(broker.bootstrap, total, "delta"))
        batch = ctx.ui.phase(f"aiokafka send_batch: {total:,} records", None,
                             lambda: asyncio.run(kafka_records.producer_run(
                                 broker.bootstrap, total, batched=True)))
    finally:
        broker.stop()
    covers = f"{total:,} records, broker {kind}, acks=all; 100-bag ReportRequests"
    lost = hub.get("lost", 0)
    lost_note = f" ({lost} dropped by the adapter, not counted)" if lost else ""
    return [
        {"id": "kafka_hub", "scenario": "kafka", "label": "mixerhub: Report → Kafka ack",
         "covers": covers + " → hub → kafka adapter → broker ack" + lost_note,
         "kind": "throughput",
         "unit": "records/s", "value": hub["records"] / hub["seconds"], "peer": "kafka_batch",
         "extra": {"per_core": hub["records"] / hub["cpu"], "broker": kind, "lost": lost}},
        {"id": "kafka_batch", "scenario": "kafka", "label": "aiokafka send_batch (floor)",
         "covers": covers.split(";")[0] + "; prebuilt batches of same-size records",
         "kind": "throughput", "unit": "records/s", "value": batch["records"] / batch["seconds"],
         "peer": None, "extra": {"per_core": batch["records"] / batch["cpu"], "broker": kind}},
    ]


# ---- expressions -----------------------------------------------------------------------------

NESTED_BAG = {"request": {"headers": {"x-user": "alice", "user-agent": "curl/8.5"}},
              "destination": {"service": {"host": "reviews.default.svc.cluster.local"}}}


def expr(ctx: Context) -> list[Row]:
    import expr_evals

    case = expr_evals.CASES[0]  # the same text is valid CEL
    seconds, rounds = (0.05, 2) if ctx.settings.quick else (0.3, 5)
    cexl, _ = ctx.ui.phase("CEXL (compiled to Python)", None,
                           lambda: expr_evals.measure(case, seconds, rounds))
    covers = f"`{case.text}`, one evaluation on a prepared bag"
    rows = [{"id": "expr_cexl", "scenario": "expr", "label": "mixerhub CEXL",
             "covers": covers + ", reference tracking on", "kind": "throughput",
             "unit": "evals/s", "value": 1 / cexl, "peer": ["expr_cel_python", "expr_cel_rust"],
             "extra": {}}]
    celpy = ctx.ui.phase("cel-python", None, lambda: _cel_python(case.text, seconds, rounds))
    rows.append({"id": "expr_cel_python", "scenario": "expr", "label": "cel-python",
                 "covers": covers + " (activation converted once)", "kind": "throughput",
                 "unit": "evals/s", "value": 1 / celpy, "peer": None, "extra": {}})
    if (reason := ctx.missing(CEL_RUST)) is None:
        rust = ctx.ui.phase("common-expression-language (Rust)", None,
                            lambda: _cel_rust(case.text, seconds, rounds))
        rows.append({"id": "expr_cel_rust", "scenario": "expr",
                     "label": "common-expression-language (Rust)",
                     "covers": covers + " (cel.Context built once; own venv)",
                     "kind": "throughput", "unit": "evals/s", "value": 1 / rust["prepared"],
                     "peer": None, "extra": {"dict_per_call_evals_per_s": 1 / rust["dict"]}})
    else:
        rows[0]["extra"]["cel_rust_skipped"] = reason
    return rows


def _cel_python(text: str, seconds: float, rounds: int) -> float:
    import celpy
    import expr_evals

    env = celpy.Environment()
    program = env.program(env.compile(text))
    activation = {name: celpy.json_to_cel(value) for name, value in NESTED_BAG.items()}
    if not bool(program.evaluate(activation)):
        raise RuntimeError("cel-python disagrees with CEXL")
    return expr_evals.best_seconds_per_call(lambda _bag: program.evaluate(activation), None,
                                            seconds, rounds)


def _cel_rust(text: str, seconds: float, rounds: int) -> dict[str, Any]:
    job = {"expression": text, "bag": NESTED_BAG, "seconds": seconds, "rounds": rounds}
    out = subprocess.run([str(CEL_RUST.path), str(Path(__file__).with_name("_cel_rust.py")),
                          json.dumps(job)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["result"] is not True:
        raise RuntimeError("common-expression-language disagrees with CEXL")
    return result


SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "envoy_alone": envoy_alone, "ext_authz": ext_authz, "lua": lua, "opa_envoy": opa_envoy,
    "ratelimit": ratelimit, "proxy": proxy, "kafka": kafka, "expr": expr,
}
