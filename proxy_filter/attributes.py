"""Attributes of an HTTP request and its response (DESIGN §7), for the proxy and middlewares.

Request: ``source.ip``/``source.port`` (the peer), ``request.headers`` (lower-case names,
repeated headers joined with ","; Envoy's pseudo-headers ``:authority``, ``:path``,
``:method`` included), ``request.path`` (with the query, as Envoy's ``:path``),
``request.url_path``, ``request.query_params`` (first value of each), ``request.host``,
``request.method``, ``request.scheme``, ``request.size`` (Content-Length when known),
``request.time``, ``request.useragent``, ``request.id``, ``context.protocol`` (``grpc`` for
gRPC content types, else ``http``), ``context.reporter.kind`` = ``inbound``; plus the static
attributes given (``destination.*`` from ``--attribute``), which the request cannot override.
Response: ``response.code``, ``response.size``/``total_size``, ``response.headers``,
``response.duration``, ``response.time``, ``request.size``/``total_size`` (bytes actually
read), ``check.cache_hit``, ``quota.cache_hit``, ``check.error_code``/``error_message``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from mixerhub.attributes.types import TEXT_TYPES, Manifest, default_manifest
from mixerhub.jsonform import values_from_json

if TYPE_CHECKING:
    from mixerhub.proxy_filter.gate import Decision

_UTC = dt.timezone.utc


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined with "," (RFC 9110)."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def request_values(*, method: str, scheme: str, path: str, headers: Mapping[str, str],
                   peer: tuple[str, int] | None, request_id: str,
                   static: Mapping[str, Any]) -> dict[str, Any]:
    """The check attributes of a request whose headers went through :func:`header_map`."""
    url_path, _, query = path.partition("?")
    host = headers.get("host", "")
    values: dict[str, Any] = {
        "request.headers": {**headers, ":authority": host, ":path": path, ":method": method},
        "request.path": path, "request.url_path": url_path, "request.host": host,
        "request.method": method, "request.scheme": scheme, "request.id": request_id,
        "request.time": dt.datetime.now(_UTC), "context.reporter.kind": "inbound",
        "context.protocol": "grpc" if headers.get("content-type", "").startswith(
            "application/grpc") else "http",
    }
    if query:
        values["request.query_params"] = dict(reversed(parse_qsl(query, keep_blank_values=True)))
    _optional(values, headers)
    _peer(values, peer)
    values.update(static)
    return values


def _optional(values: dict[str, Any], headers: Mapping[str, str]) -> None:
    agent = headers.get("user-agent")
    if agent is not None:
        values["request.useragent"] = agent
    length = headers.get("content-length", "")
    if length.isdigit():
        values["request.size"] = int(length)


def _peer(values: dict[str, Any], peer: tuple[str, int] | None) -> None:
    if peer is None:
        return
    address = _address(peer[0])
    if address is not None:  # None: a unix socket or an unknown peer
        values["source.ip"] = address
        values["source.port"] = int(peer[1])


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parsed once per peer (ip_address costs ~2 µs, and peers repeat)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclasses.dataclass(slots=True)
class Exchange:
    """What one request moved, for its report."""

    code: int = 0
    request_size: int | None = None  # bytes read; None: not counted (Content-Length used)
    body_size: int = 0
    response_headers: dict[str, str] = dataclasses.field(default_factory=dict)


def report_record(values: Mapping[str, Any], decision: Decision, exchange: Exchange,
                  duration: float) -> dict[str, Any]:
    """The report of a request: its check attributes, the decision, the response."""
    size = exchange.request_size if exchange.request_size is not None \
        else values.get("request.size", 0)
    record = {**values, "check.cache_hit": decision.cache_hit,
              "quota.cache_hit": decision.quota_cache_hit,
              "response.code": exchange.code, "response.headers": exchange.response_headers,
              "response.size": exchange.body_size,
              "response.total_size": exchange.body_size + headers_size(
                  exchange.response_headers),
              "response.duration": dt.timedelta(seconds=duration),
              "response.time": dt.datetime.now(_UTC), "request.size": size,
              "request.total_size": size + headers_size(values.get("request.headers", {}))}
    if not decision.allowed:
        record["check.error_code"] = decision.code
        record["check.error_message"] = decision.message
    return record


def headers_size(headers: Mapping[str, str]) -> int:
    """Bytes of the header block as HTTP/1.1 writes it (``name: value\\r\\n``)."""
    return sum(len(k) + len(v) + 4 for k, v in headers.items())


def parse_static(pairs: Iterable[str], manifest: Manifest | None = None) -> dict[str, Any]:
    """``NAME=VALUE`` pairs typed by the attribute manifest: text types as given, other
    types from their JSON form (``destination.port=9080``,
    ``destination.labels={"app":"reviews"}``, ``destination.ip=10.0.0.7``)."""
    manifest = default_manifest() if manifest is None else manifest
    raw: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{pair!r}: give NAME=VALUE")
        raw[name] = text if manifest.get(name) in TEXT_TYPES else _json_or_text(text)
    return values_from_json(raw, manifest)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
