"""TLS and mTLS for the hub's gRPC port and its HTTP API, with reload without restart.

One :class:`TlsMaterial` holds the validated bytes of the server key, its certificate
chain and (for mTLS) the client CA bundle. It re-reads the files when they change (a
periodic ``stat``; Kubernetes' symlink swap of a mounted secret included): a good set
replaces the old one for new connections, a bad one is logged and counted and the old one
keeps serving. gRPC asks for the current set on each handshake
(``dynamic_ssl_server_credentials``); the HTTP port switches each new handshake to a
context built from the current set. Connections already open keep their certificates.

With a client CA every connection must present a certificate the CA signed; its identity —
the first URI SAN (``spiffe://…``), else the subject CN — becomes the attribute
``context.reporter.principal`` of every check and report on that connection
(:mod:`mixerhub.server.identity`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mixerhub.metrics import Metrics

#: How often the files are checked for changes (seconds).
RELOAD_INTERVAL = 10.0


class TlsError(RuntimeError):
    """TLS files that cannot be used: the hub does not start (a reload keeps the old set)."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    cert: str  # PEM: the server certificate, then any intermediates
    key: str  # PEM: its private key
    client_ca: str = ""  # PEM bundle: clients must present a certificate it signed

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cert, self.key, self.client_ca) if p)


@dataclasses.dataclass(frozen=True)
class TlsSet:
    """One validated set of PEM bytes."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    not_after: float  # the server certificate's expiry, as a Unix time


def files_from(cert: str, key: str, client_ca: str) -> TlsFiles | None:
    """The TLS files of the serve flags, or None without TLS; half a pair is an error."""
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise TlsError("TLS needs both --tls-cert and --tls-key")
    return TlsFiles(cert, key, client_ca)


def read_set(files: TlsFiles) -> TlsSet:
    """Read and check the files: the key matches the certificate, the CA bundle parses."""
    cert, key = _read(files.cert), _read(files.key)
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError as exc:
        raise TlsError(f"{files.cert}: not a PEM certificate: {exc}") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{files.key}: not an unencrypted PEM private key: {exc}") from None
    if _public(private.public_key()) != _public(chain[0].public_key()):
        raise TlsError(f"{files.key} is not the key of the certificate in {files.cert}")
    ca = None
    if files.client_ca:
        ca = _read(files.client_ca)
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError as exc:
            raise TlsError(f"{files.client_ca}: not a PEM CA bundle: {exc}") from None
    return TlsSet(cert, key, ca, chain[0].not_valid_after_utc.timestamp())


class TlsMaterial:
    """The current TLS set of a hub, reloaded when its files change."""

    def __init__(self, files: TlsFiles, metrics: Metrics, log: Any) -> None:
        self.files = files
        self._metrics = metrics
        self._log = log
        self.current = read_set(files)
        self.version = 1
        self._signature = _signature(files)
        self._grpc_version = 1
        self._http_context: ssl.SSLContext | None = None
        metrics.tls_cert_expiry.set(self.current.not_after)

    @property
    def mutual(self) -> bool:
        return self.current.client_ca is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials that pick up reloaded files on the next handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(), self._fetch, require_client_authentication=self.mutual)

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for the HTTP port. Each handshake switches to the context of
        the current set (the SNI callback runs for every ClientHello, with or without a
        server name), so a reload replaces the chain and the client CA alike."""
        context = self._new_context(self.current)

        def current(ssl_object: Any, server_name: str | None, _: ssl.SSLContext) -> None:
            ssl_object.context = self._http_context
        context.sni_callback = current
        self._http_context = self._new_context(self.current)
        return context

    def refresh(self) -> bool:
        """Reload when the files changed; True when a new set took effect."""
        signature = _signature(self.files)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            new = read_set(self.files)
            http_context = self._new_context(new)
        except (TlsError, ssl.SSLError, OSError) as exc:
            self._metrics.tls_reloads.labels("error").inc()
            self._log.error("TLS reload failed; the running certificates stay", error=str(exc))
            return False
        self.current = new
        self._http_context = http_context
        self.version += 1
        self._metrics.tls_reloads.labels("ok").inc()
        self._metrics.tls_cert_expiry.set(new.not_after)
        self._log.info("TLS certificates reloaded", version=self.version)
        return True

    async def watch(self, stop: asyncio.Event, interval: float = RELOAD_INTERVAL) -> None:
        """Check the files every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                self.refresh()

    def _grpc_config(self) -> Any:
        tls = self.current
        return grpc.ssl_server_certificate_configuration(
            [(tls.key, tls.cert)], root_certificates=tls.client_ca)

    def _fetch(self) -> Any:
        # Called by gRPC before each handshake (on one of its threads): None keeps the set.
        if self._grpc_version == self.version:
            return None
        self._grpc_version = self.version
        return self._grpc_config()

    def _new_context(self, tls: TlsSet) -> ssl.SSLContext:
        # A bare server context: no system CAs, so only the configured client CA is trusted.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: hand it the validated bytes in a private file.
        with tempfile.TemporaryDirectory(prefix="mixerhub-tls-") as folder:
            cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
            cert.write_bytes(tls.cert)
            key.touch(mode=0o600)
            key.write_bytes(tls.key)
            context.load_cert_chain(cert, key)
        if tls.client_ca is not None:
            context.load_verify_locations(cadata=tls.client_ca.decode("ascii", "replace"))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {path}: {exc.strerror or exc}") from None


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def _signature(files: TlsFiles) -> tuple[tuple[int, int, int], ...]:
    return file_signature(files.paths)


def file_signature(paths: Iterable[str]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or its symlink is swapped (a Kubernetes
    Secret's update): for each path, its inode, modification time and size."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, 0, -1))
    return tuple(out)
