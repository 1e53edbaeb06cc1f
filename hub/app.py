"""The one wiring place: settings → plugins → config → servers → signals."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from typing import Any

from mixerhub import __version__
from mixerhub.config.loader import DEFAULT_NAMESPACE
from mixerhub.config.manager import ConfigManager
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.plugins import Plugins, load_plugins
from mixerhub.policy import AllowAll, Policy
from mixerhub.server.grpc_server import DEFAULT_SERVICES, GrpcServer
from mixerhub.server.http import HttpServer, build_app
from mixerhub.server.mixer import MixerService


@dataclasses.dataclass(frozen=True)
class Settings:
    """Process settings (ports, paths); policy lives in the config files."""

    grpc: str = "127.0.0.1:9091"
    http: str = "127.0.0.1:9093"
    config: tuple[str, ...] = ()
    default_namespace: str = DEFAULT_NAMESPACE
    watch: bool = True  # reload on file changes
    cache_size: int = 10_000  # hub decision cache entries (0 = off)


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
        self.metrics = metrics or Metrics()
        self.plugins = plugins or load_plugins()
        self.log = get_logger("mixerhub.hub")
        self.policy: Policy = AllowAll()
        self._ready = False
        self._stop_watch = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.config = ConfigManager(settings.config, self.plugins, self.metrics, self._use,
                                    settings.default_namespace, settings.cache_size)
        self.mixer = MixerService(lambda: self.policy, self.metrics, get_logger("mixerhub.mixer"))
        self.grpc = GrpcServer(settings.grpc, self._grpc_handlers(), DEFAULT_SERVICES)
        host, port = split_hostport(settings.http)
        self.http = HttpServer(build_app(self.metrics, self.ready, self.debug_config,
                                         self.plugins.describe, self._http_routes()),
                               host, port)

    def _grpc_handlers(self) -> list[Any]:
        """Every gRPC service the hub's port serves besides health and reflection."""
        return [self.mixer.handler()]

    def _http_routes(self) -> list[Any]:
        """Installers of the HTTP port's API routes (each takes the aiohttp app)."""
        return []

    def _use(self, policy: Policy) -> None:
        self.policy = policy

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
        await self.grpc.start()
        try:
            await self.http.start()
        except BaseException:
            await self.grpc.stop(grace=0)
            await self.config.close()
            raise
        self._ready = True
        self.metrics.up.set(1)
        self.log.info("serving", version=__version__, grpc_port=self.grpc.port,
                      http_port=self.http.port)

    async def reload(self, reason: str = "request") -> bool:
        if not self.settings.config:
            return False
        return await self.config.reload(reason)

    async def stop(self) -> None:
        self._ready = False
        self.metrics.up.set(0)
        self._stop_watch.set()
        await self.grpc.stop()
        await self.http.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.config.close()
        self.log.info("stopped")


async def serve(settings: Settings, started: asyncio.Event | None = None) -> None:
    """Run a hub until SIGTERM or SIGINT; SIGHUP reloads the config."""
    hub = Hub(settings)
    await hub.start()
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
