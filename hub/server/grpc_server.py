"""The one grpc.aio server: Mixer v1, health and reflection (later Envoy's services too)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mixerhub.server.mixer import SERVICE_NAME as MIXER


class GrpcServer:
    """Owns the grpc.aio server, its health servicer and the services' names."""

    def __init__(self, address: str, handlers: Sequence[grpc.GenericRpcHandler],
                 service_names: Sequence[str],
                 credentials: grpc.ServerCredentials | None = None,
                 interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> None:
        """``credentials``: TLS (``mixerhub.tls``), else plaintext; ``interceptors`` run
        before every handler (the mTLS identity)."""
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)],
                                      interceptors=tuple(interceptors) or None)
        self.server.add_generic_rpc_handlers(tuple(handlers))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._names = tuple(service_names)
        reflection.enable_server_reflection(
            (*self._names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server)
        self.port = (self.server.add_secure_port(address, credentials) if credentials
                     else self.server.add_insecure_port(address))
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")

    async def start(self) -> None:
        await self.server.start()
        for name in ("", *self._names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = 5.0) -> None:
        for name in ("", *self._names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)


DEFAULT_SERVICES = (MIXER,)
