"""A Mixer v1 client: compresses attributes with the global dictionary, calls Check and
Report, and decodes verdicts. The caching client (:mod:`mixerhub.proxy_filter.gate`) builds
on it; tests use it directly.

A hub whose dictionary is shorter than ours answers INVALID_ARGUMENT asking to resend with
``global_word_count=N``: the client then encodes with the first N words only, from then on.

A hub that serves TLS is reached with a :class:`HubTls` (the proxy's ``--hub-tls-*``
flags): :func:`hub_channel` builds the gRPC channel, :meth:`HubTls.ssl_context` the HTTPS
context for QuotaSpecs, from the same files. When the files are replaced (a rotated
certificate), :meth:`MixerClient.reload_tls` moves the client to a new channel built from
them; calls in flight finish on the old one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import grpc
from cryptography import x509

from mixerhub.api.mixer.v1 import check_pb2, report_pb2
from mixerhub.attributes.compression import Encoder, decode_references
from mixerhub.attributes.dictionary import global_words
from mixerhub.tls import TlsError, TlsFiles, file_signature, read_set
from mixerhub.verdict import HeaderOp, HeaderOperation, QuotaGrant, QuotaRequest, Verdict

CHECK = "/istio.mixer.v1.Mixer/Check"
REPORT = "/istio.mixer.v1.Mixer/Report"
Encoding = Literal["independent", "delta"]
#: Reconnect quickly after a hub restart (gRPC's default backoff grows to 120 s).
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000))
_RESEND = re.compile(r"resend with global_word_count=(\d+)")


@dataclasses.dataclass(frozen=True)
class HubTls:
    """TLS to the hub: the CA bundle that signed the hub's certificate, optionally a client
    certificate for the hub's mTLS (its identity becomes ``context.reporter.principal``),
    and a name to check in the hub's certificate instead of the target's host. Validated
    PEM bytes, with the file names ``ssl`` loads the client certificate from."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None
    cert_file: str = ""
    key_file: str = ""
    server_name: str | None = None
    ca_file: str = ""

    @property
    def mutual(self) -> bool:
        return self.cert is not None

    @property
    def files(self) -> tuple[str, ...]:
        """The files this set was read from (none for one built from bytes)."""
        return tuple(f for f in (self.ca_file, self.cert_file, self.key_file) if f)

    def reread(self) -> HubTls:
        """The same files read again (raises :class:`~mixerhub.tls.TlsError` when they
        are unreadable or do not fit together: the caller keeps the old set)."""
        fresh = hub_tls_from(self.ca_file, self.cert_file or None, self.key_file or None,
                             self.server_name)
        assert fresh is not None  # noqa: S101 - ca_file is set: never plaintext
        return fresh

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context for the hub's HTTP port: only ``ca`` is trusted and the hub's
        name is checked (pass ``server_name`` to aiohttp as ``server_hostname``)."""
        context = ssl.create_default_context(cadata=self.ca.decode("ascii", "replace"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.mutual:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def hub_tls_from(ca: str | None, cert: str | None = None, key: str | None = None,
                 server_name: str | None = None) -> HubTls | None:
    """The proxy's ``--hub-tls-*`` files as a :class:`HubTls`, or None for plaintext.

    Raises :class:`~mixerhub.tls.TlsError` for half a certificate/key pair, options without
    a CA, and files that cannot be read or do not fit together (checked as the hub checks
    its own: :func:`mixerhub.tls.read_set`)."""
    if bool(cert) != bool(key):
        raise TlsError("--hub-tls-cert and --hub-tls-key go together "
                       "(a client certificate and its key)")
    if not ca:
        if cert or server_name:
            raise TlsError("TLS to the hub needs --hub-tls-ca "
                           "(the CA that signed the hub's certificate)")
        return None
    if cert and key:
        files = read_set(TlsFiles(cert, key, ca))
        assert files.client_ca is not None  # noqa: S101 - read_set reads the CA it is given
        return HubTls(files.client_ca, files.cert, files.key, cert, key, server_name or None,
                      ca)
    return HubTls(_read_ca(ca), server_name=server_name or None, ca_file=ca)


def _read_ca(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsError(f"{path}: not a PEM CA bundle: {exc}") from None
    return data


def hub_channel(target: str, tls: HubTls | None = None) -> grpc.aio.Channel:
    """A channel to the hub's gRPC port: plaintext without ``tls``."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    options: tuple[tuple[str, Any], ...] = CHANNEL_OPTIONS
    if tls.server_name:
        options += (("grpc.ssl_target_name_override", tls.server_name),)
    return grpc.aio.secure_channel(target, tls.grpc_credentials(), options=options)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    quotas: dict[str, QuotaGrant]


class MixerClient:
    """One channel to a hub (or any Mixer v1 server)."""

    def __init__(self, target: str, *, timeout: float = 5.0, encoder: Encoder | None = None,
                 channel: grpc.aio.Channel | None = None,
                 dictionary: Sequence[str] | None = None, tls: HubTls | None = None) -> None:
        """``dictionary``: the words ``encoder`` (default: one over them) was built on;
        ``tls``: reach the hub over TLS (ignored when ``channel`` is given)."""
        self.words = tuple(global_words() if dictionary is None else dictionary)
        self.encoder = encoder or Encoder(self.words)
        self.timeout = timeout
        self.target = target
        self.tls = None if channel is not None else tls
        self._tls_signature = file_signature(self.tls.files) if self.tls else ()
        self._retired: dict[asyncio.Task[None], grpc.aio.Channel] = {}  # closing
        self._use(channel or hub_channel(target, tls))

    def _use(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._check = channel.unary_unary(
            CHECK, request_serializer=check_pb2.CheckRequest.SerializeToString,
            response_deserializer=check_pb2.CheckResponse.FromString)
        self._report = channel.unary_unary(
            REPORT, request_serializer=report_pb2.ReportRequest.SerializeToString,
            response_deserializer=report_pb2.ReportResponse.FromString)

    def reload_tls(self) -> bool:
        """Read the TLS files again if they changed since they were last read, and move
        to a new channel built from them; True when it did. Calls already made finish on
        the old channel (closed once they have, or after twice the timeout). Raises
        :class:`~mixerhub.tls.TlsError` when the new files are unusable: the client
        keeps its channel, and tries again when the files change again. Call it on the
        client's event loop (``Gate`` does, every ``tls_reload_interval``)."""
        if self.tls is None or not self.tls.files:
            return False
        signature = file_signature(self.tls.files)
        if signature == self._tls_signature:
            return False
        self._tls_signature = signature
        fresh = self.tls.reread()
        old = self.channel
        self._use(hub_channel(self.target, fresh))
        self.tls = fresh
        task = asyncio.get_running_loop().create_task(old.close(grace=2 * self.timeout))
        self._retired[task] = old
        task.add_done_callback(self._retired.pop)
        return True

    async def check(self, attributes: Mapping[str, Any],
                    quotas: Mapping[str, QuotaRequest] | None = None,
                    dedup_id: str = "", timeout: float | None = None) -> CheckResult:
        request = self._check_request(attributes, quotas, dedup_id)
        try:
            response = await self._check(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as exc:
            if not self._fell_back(exc):
                raise
            request = self._check_request(attributes, quotas, dedup_id)
            response = await self._check(request, timeout=timeout or self.timeout)
        return decode_check_response(response)

    def _check_request(self, attributes: Mapping[str, Any],
                       quotas: Mapping[str, QuotaRequest] | None,
                       dedup_id: str) -> check_pb2.CheckRequest:
        request = check_pb2.CheckRequest(
            attributes=self.encoder.encode(attributes),
            global_word_count=self.encoder.global_word_count,
            deduplication_id=dedup_id)
        for name, q in (quotas or {}).items():
            request.quotas[name].amount = q.amount
            request.quotas[name].best_effort = q.best_effort
        return request

    def _fell_back(self, exc: grpc.aio.AioRpcError) -> bool:
        """Switch to the hub's shorter dictionary when it asks; True if the call may be
        resent."""
        found = _RESEND.search(exc.details() or "")
        if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT or found is None:
            return False
        count = int(found.group(1))
        if count >= self.encoder.global_word_count:
            return False
        # In place: whoever shares this encoder (the report batcher) follows.
        self.encoder.index = Encoder(self.words[:count]).index
        return True

    async def report(self, bags: Sequence[Mapping[str, Any]],
                     encoding: Encoding = "independent") -> None:
        for request in encode_report(self.encoder, bags, encoding):
            await self.send_report(request)

    async def send_report(self, request: report_pb2.ReportRequest,
                          timeout: float | None = None) -> None:
        """Send an encoded ReportRequest (the report batcher encodes its own)."""
        await self._report(request, timeout=timeout or self.timeout)

    async def close(self) -> None:
        await self.channel.close()
        for old in list(self._retired.values()):  # still finishing calls: not any more
            await old.close()
        if self._retired:
            await asyncio.wait(list(self._retired), timeout=1.0)


def encode_report(encoder: Encoder, bags: Sequence[Mapping[str, Any]],
                  encoding: Encoding = "independent") -> list[report_pb2.ReportRequest]:
    """INDEPENDENT: one request, words shared in ``default_words``. DELTA: each bag after
    the first carries only what changed; a bag that drops an attribute cannot be a delta,
    so it starts a new request."""
    if encoding == "independent":
        request = report_pb2.ReportRequest(
            global_word_count=encoder.global_word_count,
            repeated_attributes_semantics=report_pb2.ReportRequest.INDEPENDENT_ENCODING)
        shared: list[str] = []
        for bag in bags:
            request.attributes.append(encoder.encode(bag, shared_words=shared))
        request.default_words.extend(shared)
        return [request]
    requests: list[report_pb2.ReportRequest] = []
    previous: Mapping[str, Any] | None = None
    for bag in bags:
        if previous is None or not previous.keys() <= bag.keys():
            requests.append(report_pb2.ReportRequest(
                global_word_count=encoder.global_word_count,
                repeated_attributes_semantics=report_pb2.ReportRequest.DELTA_ENCODING))
            delta = dict(bag)
        else:
            delta = {k: v for k, v in bag.items() if k not in previous or previous[k] != v}
        requests[-1].attributes.append(encoder.encode(delta))
        previous = bag
    return requests


def decode_check_response(response: check_pb2.CheckResponse) -> CheckResult:
    pre = response.precondition
    rd = pre.route_directive
    verdict = Verdict(
        code=pre.status.code, message=pre.status.message,
        valid_duration=pre.valid_duration.ToTimedelta(), valid_use_count=pre.valid_use_count,
        references=tuple(decode_references(pre.referenced_attributes)),
        request_header_ops=_ops(rd.request_header_operations),
        response_header_ops=_ops(rd.response_header_operations),
        direct_response_code=rd.direct_response_code,
        direct_response_body=rd.direct_response_body)
    quotas = {
        name: QuotaGrant(granted_amount=q.granted_amount,
                         valid_duration=q.valid_duration.ToTimedelta(),
                         code=q.status.code, message=q.status.message,
                         references=tuple(decode_references(q.referenced_attributes)))
        for name, q in response.quotas.items()
    }
    return CheckResult(verdict, quotas)


def _ops(ops: Any) -> tuple[HeaderOp, ...]:
    return tuple(HeaderOp(op.name, op.value, HeaderOperation(op.operation)) for op in ops)

