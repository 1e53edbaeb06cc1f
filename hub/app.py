"""The one wiring place: settings → policy → servers → signals."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from typing import Any

from mixerhub import __version__
from mixerhub.config.files import read_all
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
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


def split_hostport(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class Hub:
    """A running hub: its policy, metrics and servers."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.log = get_logger("mixerhub.hub")
        self.policy: Policy = AllowAll()
        self._ready = False
        self.mixer = MixerService(lambda: self.policy, self.metrics, get_logger("mixerhub.mixer"))
        self.grpc = GrpcServer(settings.grpc, [self.mixer.handler()], DEFAULT_SERVICES)
        host, port = split_hostport(settings.http)
        self.http = HttpServer(build_app(self.metrics, self.ready), host, port)

    def ready(self) -> bool:
        return self._ready

    def load_config(self) -> None:
        if not self.settings.config:
            self.log.warning("no config given: no rules, every check is allowed")
            return
        documents = read_all(self.settings.config)
        self.log.info("config read", files=list(self.settings.config), documents=len(documents))

    async def start(self) -> None:
        self.load_config()
        await self.grpc.start()
        await self.http.start()
        self._ready = True
        self.metrics.up.set(1)
        self.log.info("serving", version=__version__, grpc_port=self.grpc.port,
                      http_port=self.http.port)

    async def stop(self) -> None:
        self._ready = False
        self.metrics.up.set(0)
        await self.grpc.stop()
        await self.http.stop()
        self.log.info("stopped")


async def serve(settings: Settings, started: asyncio.Event | None = None) -> None:
    """Run a hub until SIGTERM or SIGINT, then shut down cleanly."""
    hub = Hub(settings)
    await hub.start()
    if started is not None:
        started.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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
