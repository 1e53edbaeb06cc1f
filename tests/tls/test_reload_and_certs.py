"""Certificates change without a restart (files watched; a bad set keeps the old one), and
`mixerhub certs dev` writes a set the hub serves with."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509

from mixerhub.app import Hub, Settings
from tests.tls.conftest import Certs


def install(source: Certs, folder: Path) -> None:
    """Put ``source``'s server set and CA where the hub reads them, each file whole."""
    for name in ("server.pem", "server-key.pem", "ca.pem"):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(source.read(name))
        os.replace(tmp, folder / name)


async def grpc_works(port: int, certs: Certs, client: str) -> bool:
    """A new connection trusting ``certs``' CA, presenting its ``client`` certificate."""
    client_ = certs.mixer_client(port, client)
    try:
        await client_.check({"request.path": "/"}, timeout=2)
        return True
    except grpc.aio.AioRpcError:
        return False
    finally:
        await client_.close()


async def https_works(port: int, certs: Certs, client: str) -> bool:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.post(f"https://127.0.0.1:{port}/v1/check",
                                    json={"attributes": {}},
                                    ssl=certs.ssl_context(client)) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False


async def eventually(probe, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await probe():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_new_certificates_and_client_ca_take_effect_without_a_restart(
        certs: Certs, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    install(certs, served)
    rotated = Certs(tmp_path / "rotated")  # a new CA, server and client certificates
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0",
                       tls_cert=str(served / "server.pem"),
                       tls_key=str(served / "server-key.pem"),
                       tls_client_ca=str(served / "ca.pem"), tls_reload_interval=0.1))
    await hub.start()
    try:
        port, http_port = hub.grpc.port, hub.http.port
        assert await grpc_works(port, certs, "proxy")
        assert not await grpc_works(port, rotated, "proxy")
        install(rotated, served)
        assert await eventually(lambda: grpc_works(port, rotated, "proxy"))
        assert not await grpc_works(port, certs, "proxy")  # the old client CA is gone
        assert await eventually(lambda: https_works(http_port, rotated, "proxy"))
        assert not await https_works(http_port, certs, "proxy")
        # A broken set (a key of another certificate) is refused; the running one stays.
        (served / "server-key.pem").write_bytes(certs.read("server-key.pem"))
        await asyncio.sleep(0.5)
        assert await grpc_works(port, rotated, "proxy")
        assert await https_works(http_port, rotated, "proxy")
        metrics = hub.metrics.tls_reloads
        ok, error = metrics.labels("ok")._value.get(), metrics.labels("error")._value.get()
    finally:
        await hub.stop()
    assert (ok, error) == (1, 1)


def test_certs_dev_writes_a_ca_a_server_and_client_certificates(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mixerhub", "certs", "dev", "--out", str(tmp_path / "dev"),
         "--hosts", "hub.example", "10.0.0.7", "--client", "edge=spiffe://example/edge",
         "--client", "batch"], capture_output=True, text=True, timeout=60, check=True)
    names = [Path(line).name for line in out.stdout.split()]
    assert names == ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "edge.pem",
                     "edge-key.pem", "batch.pem", "batch-key.pem"]
    server = x509.load_pem_x509_certificate((tmp_path / "dev" / "server.pem").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in sans.get_values_for_type(x509.DNSName)] == ["hub.example"]
    assert [str(v) for v in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    edge = x509.load_pem_x509_certificate((tmp_path / "dev" / "edge.pem").read_bytes())
    uris = edge.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example/edge"]
    assert (tmp_path / "dev" / "ca-key.pem").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("bad", ["ca", "a/b", "=spiffe://x"])
def test_certs_dev_refuses_a_bad_client_name(tmp_path: Path, bad: str) -> None:
    out = subprocess.run([sys.executable, "-m", "mixerhub", "certs", "dev", "--out",
                          str(tmp_path), "--client", bad], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "give NAME or NAME=URI" in out.stderr
