"""Certificates for the mTLS tests (made by mixerhub.certs, the code behind `certs dev`),
and clients that present them."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from mixerhub.certs import client_cert, new_authority, server_cert
from mixerhub.proxy_filter.mixer_client import MixerClient

PROXY_ID = "spiffe://mixerhub.test/ns/default/sa/proxy"
INTRUDER_ID = "spiffe://mixerhub.test/ns/default/sa/intruder"


class Certs:
    """A CA, a server certificate for 127.0.0.1, and client certificates, on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = new_authority("test CA")
        self._write("ca.pem", self.ca.pem.cert)
        server = server_cert(self.ca, ["127.0.0.1", "localhost"])
        self._write("server.pem", server.cert)
        self._write("server-key.pem", server.key)
        for name, uri in (("proxy", PROXY_ID), ("intruder", INTRUDER_ID), ("cn-only", None)):
            issued = client_cert(self.ca, name, uri)
            self._write(f"{name}.pem", issued.cert)
            self._write(f"{name}-key.pem", issued.key)

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def _write(self, name: str, data: bytes) -> None:
        (self.folder / name).write_bytes(data)

    def grpc_credentials(self, client: str | None) -> grpc.ChannelCredentials:
        if client is None:
            return grpc.ssl_channel_credentials(self.read("ca.pem"))
        return grpc.ssl_channel_credentials(self.read("ca.pem"), self.read(f"{client}-key.pem"),
                                            self.read(f"{client}.pem"))

    def mixer_client(self, port: int, client: str | None) -> MixerClient:
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", self.grpc_credentials(client))
        return MixerClient(f"127.0.0.1:{port}", channel=channel, timeout=5)

    def ssl_context(self, client: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.path("ca.pem"))
        if client is not None:
            context.load_cert_chain(self.path(f"{client}.pem"), self.path(f"{client}-key.pem"))
        return context


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
