"""The one wiring place: settings → plugins → config → servers → signals."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mixerhub import __version__
from mixerhub.attributes.types import Manifest, default_manifest
from mixerhub.config.loader import DEFAULT_NAMESPACE
from mixerhub.config.manager import ConfigManager
from mixerhub.decisions import recorder_from_settings
from mixerhub.envoy.accesslog import SERVICE_NAME as ACCESSLOG
from mixerhub.envoy.accesslog import AccessLogService
from mixerhub.envoy.authz import SERVICE_NAME as AUTHZ
from mixerhub.envoy.authz import AuthorizationService
from mixerhub.envoy.ratelimit import SERVICE_NAME as RATELIMIT
from mixerhub.envoy.ratelimit import RateLimitService
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.plugins import Plugins, load_plugins
from mixerhub.policy import AllowAll, Policy
from mixerhub.ratelimit.config import Domain
from mixerhub.ratelimit.limiter import Limiter, counters_for
from mixerhub.server.grpc_server import DEFAULT_SERVICES, GrpcServer
from mixerhub.server.debugpage import DebugPage
from mixerhub.server.http import HttpServer, build_app, debug_allowed
from mixerhub.server.identity import PrincipalInterceptor, PrincipalPolicy, principal_middleware
from mixerhub.server.shedding import ReportGate, Shedder
from mixerhub.tls import RELOAD_INTERVAL, TlsMaterial, files_from
from mixerhub.tracing import from_settings as tracing_from_settings
from mixerhub.server.checkapi import CheckApi
from mixerhub.server.mixer import MixerService
from mixerhub.server.quotaspecs import quotaspec_routes


@dataclasses.dataclass(frozen=True)
class Settings:
    """Process settings (ports, paths); policy lives in the config files."""

    grpc: str = "127.0.0.1:9091"
    http: str = "127.0.0.1:9093"
    config: tuple[str, ...] = ()
    default_namespace: str = DEFAULT_NAMESPACE
    watch: bool = True  # reload on file changes
    cache_size: int = 10_000  # hub decision cache entries (0 = off)
    ratelimit_backend: str = "memory"  # descriptor-YAML counters: memory or redis://…
    # Recorded checks (docs/decisions.md): a rotating JSON-lines file and/or a Kafka topic.
    record_checks: str = ""  # the file ("" = not recorded to a file)
    record_max_bytes: int = 100 << 20  # rotate before the file grows past this
    record_backups: int = 5  # rotated files kept
    record_kafka: str = ""  # brokers HOST:PORT[,HOST:PORT] ("" = not recorded to Kafka)
    record_kafka_topic: str = "mixerhub.decisions"
    record_kafka_spool: str = ""  # spool folder for that topic ("" = memory only)
    # TLS on the gRPC port and the HTTP API; a client CA makes it mutual (docs/operations.md).
    tls_cert: str = ""  # PEM certificate chain ("" = plaintext)
    tls_key: str = ""  # PEM private key
    tls_client_ca: str = ""  # PEM CA bundle clients' certificates must chain to
    tls_reload_interval: float = RELOAD_INTERVAL  # seconds between checks for new files
    admin: str = ""  # plain-HTTP HOST:PORT for /healthz, /readyz, /metrics ("" = none)
    debug_public: bool = False  # /debug/* also on listeners not bound to loopback
    # Overload (docs/operations.md): checks are shed past these bounds, reports wait.
    max_inflight_checks: int = 0  # checks answered at once (0 = no bound)
    shed_latency_ms: float = 0.0  # queue latency past which checks are shed (0 = none)
    max_inflight_reports: int = 1024  # report messages dispatched at once (0 = no bound)
    # OpenTelemetry tracing (docs/tracing.md): off unless an OTLP/gRPC endpoint is named.
    otlp_endpoint: str = ""  # HOST:PORT or https://HOST:PORT of the collector ("" = off)
    trace_sample_ratio: float = 1.0  # of traces the hub starts; callers' decisions are kept


def split_hostport(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class Hub:
    """A running hub: plugins, config, policy, metrics and servers."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None,
                 plugins: Plugins | None = None) -> None:
        self.settings = settings
        # First: with tracing on, log lines get trace ids from loggers bound after this.
        self.tracing = tracing_from_settings(settings)
        self.metrics = metrics or Metrics()
        self.plugins = plugins or load_plugins()
        self.log = get_logger("mixerhub.hub")
        self.policy: Policy = AllowAll()
        self._ready = False
        self._stop_watch = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.decisions = recorder_from_settings(settings, self.metrics)
        self.debug_page = DebugPage(lambda: self.policy, self.debug_config, self.metrics)
        self.config = ConfigManager(settings.config, self.plugins, self.metrics, self._use,
                                    settings.default_namespace, settings.cache_size)
        files = files_from(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        self.tls = TlsMaterial(files, self.metrics, get_logger("mixerhub.tls")) if files else None
        mutual = self.tls is not None and self.tls.mutual
        stamped = PrincipalPolicy(lambda: self.policy)
        current: Callable[[], Policy] = (lambda: stamped) if mutual else (lambda: self.policy)
        self.shedder = Shedder(self.metrics, settings.max_inflight_checks,
                               settings.shed_latency_ms / 1000)
        reports = ReportGate(self.metrics, settings.max_inflight_reports)
        self.mixer = MixerService(current, self.metrics, get_logger("mixerhub.mixer"),
                                  shedder=self.shedder, reports=reports, tracing=self.tracing)
        self.authz = AuthorizationService(current, self.manifest, self.metrics,
                                          get_logger("mixerhub.envoy"), self.shedder,
                                          tracing=self.tracing)
        self.accesslog = AccessLogService(current, self.metrics,
                                          get_logger("mixerhub.envoy"), reports,
                                          tracing=self.tracing)
        self.check_api = CheckApi(current, self.manifest, self.metrics,
                                  get_logger("mixerhub.http"), self.shedder,
                                  tracing=self.tracing)
        self.ratelimit = RateLimitService(
            current, self._ratelimit_domains,
            Limiter(counters_for(settings.ratelimit_backend)), self.metrics,
            get_logger("mixerhub.envoy"), self.shedder)
        self.grpc = GrpcServer(settings.grpc, self._grpc_handlers(),
                               (*DEFAULT_SERVICES, AUTHZ, ACCESSLOG, RATELIMIT),
                               self.tls.grpc_credentials() if self.tls else None,
                               (PrincipalInterceptor(),) if mutual else ())
        self.http = self._http_server(settings.http, self._http_routes(), mutual)
        self.admin = self._http_server(settings.admin, (), False) if settings.admin else None

    def _http_server(self, address: str, routes: Sequence[Any], mutual: bool) -> HttpServer:
        """The HTTP API (TLS when configured) or, without routes, the plain admin port."""
        host, port = split_hostport(address)
        tls = self.tls.ssl_context() if self.tls is not None and routes else None
        app = build_app(self.metrics, self.ready, self.debug_config, self.plugins.describe,
                        routes, debug=debug_allowed(host, self.settings.debug_public),
                        middlewares=[principal_middleware] if mutual else [],
                        debug_routes=[self.debug_page.install])
        return HttpServer(app, host, port, tls)

    def _grpc_handlers(self) -> list[Any]:
        """Every gRPC service the hub's port serves besides health and reflection."""
        return [self.mixer.handler(), self.authz.handler(), self.accesslog.handler(),
                self.ratelimit.handler()]

    def _ratelimit_domains(self) -> Mapping[str, Domain]:
        snapshot = self.config.snapshot
        return snapshot.config.ratelimit_domains if snapshot is not None else {}

    def _http_routes(self) -> list[Any]:
        """Installers of the HTTP port's API routes (each takes the aiohttp app)."""
        return [self.check_api.install, quotaspec_routes(lambda: self.config.snapshot)]

    def _use(self, policy: Policy) -> None:
        if hasattr(policy, "decisions"):  # a PolicyEngine records into the hub's recorder
            policy.decisions = self.decisions
        self.debug_page.attach(policy)  # recent decisions and adapter health for /debug/
        if self.tracing is not None:  # cache hits and adapter calls on the check spans
            self.tracing.instrument(policy)
        self.policy = policy

    def manifest(self) -> Manifest:
        """The attribute manifest of the running config (Istio's default without one)."""
        snapshot = self.config.snapshot
        return snapshot.config.manifest if snapshot is not None else default_manifest()

    def ready(self) -> bool:
        return self._ready

    def debug_config(self) -> dict[str, Any]:
        snapshot = self.config.snapshot
        if snapshot is None:
            return {"version": 0, "files": [], "rules": [], "note": "no config: all allowed"}
        return snapshot.describe()

    async def start(self) -> None:
        if self.settings.config:
            await self.config.load()
            if self.settings.watch:
                self._tasks.append(asyncio.create_task(self.config.watch(self._stop_watch)))
        else:
            self.log.warning("no config given: no rules, every check is allowed")
        if self.decisions is not None:
            await self.decisions.start()
        await self.grpc.start()
        try:
            await self.http.start()
            if self.admin is not None:
                await self.admin.start()
        except BaseException:
            await self.http.stop()
            await self.grpc.stop(grace=0)
            await self.config.close()
            if self.decisions is not None:
                await self.decisions.stop()
            raise
        self._start_monitors()
        self._ready = True
        self.metrics.up.set(1)
        self.log.info("serving", version=__version__, grpc_port=self.grpc.port,
                      http_port=self.http.port,
                      admin_port=self.admin.port if self.admin is not None else None,
                      tls="off" if self.tls is None else "mutual" if self.tls.mutual else "on")

    def _start_monitors(self) -> None:
        """Background loops: TLS file reloads, the queue-latency sampler of shedding."""
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(
                self.tls.watch(self._stop_watch, self.settings.tls_reload_interval)))
        if self.shedder.max_queue_latency > 0:
            self._tasks.append(asyncio.create_task(self.shedder.measure_lag(self._stop_watch)))

    async def reload(self, reason: str = "request") -> bool:
        if self.tls is not None:  # SIGHUP also picks up new certificates at once
            self.tls.refresh()
        if not self.settings.config:
            return False
        return await self.config.reload(reason)

    async def stop(self) -> None:
        self._ready = False
        self.metrics.up.set(0)
        self._stop_watch.set()
        await self.grpc.stop()
        await self.http.stop()  # POST /v1/check records decisions too
        if self.admin is not None:
            await self.admin.stop()
        if self.decisions is not None:  # no check arrives any more: write what is queued
            await self.decisions.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.config.close()
        await self.ratelimit.close()
        if self.tracing is not None:  # last: spans of the calls answered above included
            await self.tracing.shutdown()
        self.log.info("stopped")


async def serve(settings: Settings, started: asyncio.Event | None = None) -> None:
    """Run a hub until SIGTERM or SIGINT; SIGHUP reloads the config."""
    hub = Hub(settings)
    await hub.start()
    # What start-up made (modules, protobuf descriptors, the first snapshot) lives as long
    # as the process: frozen out of the collector's sight, full collections stop walking
    # it again and again (measured: the report path's GC time fell from ~10 to ~1 µs/record).
    gc.collect()
    gc.freeze()
    if started is not None:
        started.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(hub.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    hub.log.info("signal received, shutting down")
    await hub.stop()


def run(coro: Any) -> None:
    """Run on uvloop when installed (measured faster for gRPC), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
