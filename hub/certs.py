"""``mixerhub certs dev``: a development CA, a server certificate and client certificates.

For trying mTLS on one machine or in a test cluster, never for production (the CA key sits
next to the certificates, unencrypted). Every client certificate carries its identity as a
URI SAN (``spiffe://…``), which the hub turns into ``context.reporter.principal``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_CLIENTS = ("proxy=spiffe://mixerhub.dev/proxy",)


@dataclasses.dataclass(frozen=True)
class Issued:
    """A key and its certificate, in PEM."""

    key: bytes
    cert: bytes


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA able to sign certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> Issued:
        return Issued(_key_pem(self.key), self.cert.public_bytes(serialization.Encoding.PEM))


def new_authority(name: str = "mixerhub development CA", days: int = 365) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = _base(subject, subject, key.public_key(), days)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                      content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, encipher_only=False,
                      decipher_only=False), critical=True)
    return Authority(key, builder.sign(key, hashes.SHA256()))


def server_cert(ca: Authority, hosts: Sequence[str], days: int = 90,
                common_name: str = "mixerhub") -> Issued:
    """A server certificate valid for each of ``hosts`` (DNS names or IP addresses)."""
    return _issue(ca, common_name, [_san(h) for h in hosts],
                  ExtendedKeyUsageOID.SERVER_AUTH, days)


def client_cert(ca: Authority, name: str, uri: str | None = None, days: int = 90) -> Issued:
    """A client certificate whose subject CN is ``name`` and, if given, URI SAN ``uri``."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)] if uri else []
    return _issue(ca, name, sans, ExtendedKeyUsageOID.CLIENT_AUTH, days)


def write_dev_set(out: Path, hosts: Sequence[str] = DEFAULT_HOSTS,
                  clients: Sequence[str] = DEFAULT_CLIENTS) -> list[Path]:
    """ca.pem, server.pem/server-key.pem and NAME.pem/NAME-key.pem per client
    (``NAME`` or ``NAME=URI``) into ``out``; the files written, in order."""
    out.mkdir(parents=True, exist_ok=True)
    ca = new_authority()
    written = [_write(out / "ca.pem", ca.pem.cert), _write(out / "ca-key.pem", ca.pem.key, True)]
    server = server_cert(ca, hosts)
    written += [_write(out / "server.pem", server.cert),
                _write(out / "server-key.pem", server.key, True)]
    for spec in clients:
        name, _, uri = spec.partition("=")
        issued = client_cert(ca, name, uri or None)
        written += [_write(out / f"{name}.pem", issued.cert),
                    _write(out / f"{name}-key.pem", issued.key, True)]
    return written


def _issue(ca: Authority, common_name: str, sans: list[x509.GeneralName],
           usage: x509.ObjectIdentifier, days: int) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _base(subject, ca.cert.subject, key.public_key(), days)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                    critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def _base(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
          days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days)))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    """Write ``data`` to ``path`` whole (a temporary file renamed over it, so a hub that
    watches the file never reads half of it); keys are readable by the owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    if private:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
