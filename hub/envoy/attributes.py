"""Envoy's messages → Mixer attributes (DESIGN §7).

ext_authz's ``AttributeContext`` and access-log entries carry the same facts Mixer's Envoy
filter used to send; this module names them with the vocabulary rules already use.
``context_extensions`` (set per route, e.g. by ``mixerhub envoy-config --attribute``) whose
key is an attribute name set that attribute, typed by the manifest.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import Any

from mixerhub.attributes.types import Manifest, ValueType
from mixerhub.errors import WireError
from mixerhub.jsonform import parse_duration

_UTC = dt.timezone.utc


def split_path(path: str) -> tuple[str, dict[str, str]]:
    """``/a/b?x=1&y=2`` → (``/a/b``, {x: 1, y: 2}); the first of repeated keys wins."""
    url_path, _, query = path.partition("?")
    params: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, value)
    return url_path, params


def address(values: dict[str, Any], side: str, address_msg: Any) -> None:
    """``{side}.ip`` and ``{side}.port`` of an Envoy ``Address`` (a pipe sets nothing)."""
    sock = address_msg.socket_address
    if not sock.address:
        return
    try:
        values[f"{side}.ip"] = ipaddress.ip_address(sock.address)
    except ValueError:
        return  # a name, not an IP attribute
    if sock.port_value:
        values[f"{side}.port"] = sock.port_value


def peer(values: dict[str, Any], side: str, peer_msg: Any) -> None:
    """``source``/``destination`` address, port, principal and labels of a Peer."""
    address(values, side, peer_msg.address)
    if peer_msg.principal:
        values[f"{side}.principal"] = peer_msg.principal
    if peer_msg.labels:
        values[f"{side}.labels"] = dict(peer_msg.labels)


def http_request(values: dict[str, Any], http: Any) -> None:
    """The request's method, path (query split off), host, scheme, size, headers and id."""
    headers = dict(http.headers)
    if not headers and len(http.header_map.headers):
        headers = {h.key: h.raw_value.decode("utf-8", "replace") or h.value
                   for h in http.header_map.headers}
    values["request.headers"] = headers
    for name, value in (("request.method", http.method), ("request.host", http.host),
                        ("request.scheme", http.scheme)):
        if value:
            values[name] = value
    if http.path:
        values["request.path"] = http.path
        values["request.url_path"], values["request.query_params"] = split_path(http.path)
    request_id = http.id or headers.get("x-request-id", "")
    if request_id:
        values["request.id"] = request_id
    if http.size >= 0 and (http.size or "content-length" in headers):
        values["request.size"] = http.size
    if "user-agent" in headers:
        values["request.useragent"] = headers["user-agent"]
    grpc = headers.get("content-type", "").startswith("application/grpc")
    values["context.protocol"] = "grpc" if grpc else "http"


def check_attributes(ctx: Any, manifest: Manifest) -> dict[str, Any]:
    """An ext_authz ``AttributeContext`` as bag values."""
    values: dict[str, Any] = {}
    peer(values, "source", ctx.source)
    peer(values, "destination", ctx.destination)
    if ctx.source.principal or ctx.source.certificate:
        values["connection.mtls"] = True
    if ctx.tls_session.sni:
        values["connection.requested_server_name"] = ctx.tls_session.sni
    if ctx.request.HasField("time"):
        values["request.time"] = ctx.request.time.ToDatetime(tzinfo=_UTC)
    if ctx.request.HasField("http"):
        http_request(values, ctx.request.http)
    extensions(values, ctx.context_extensions, manifest)
    return values


def extensions(values: dict[str, Any], extra: Mapping[str, str], manifest: Manifest) -> None:
    """Context extensions that name an attribute set it (typed); the rest are ignored."""
    for name, text in extra.items():
        value_type = manifest.get(name)
        if value_type is None:
            continue
        try:
            values[name] = from_text(value_type, text)
        except ValueError as exc:
            raise WireError(f"context_extensions[{name!r}]: {exc}") from None


def from_text(value_type: ValueType, text: str) -> Any:
    """An attribute value written as text (``--attribute``, context extensions)."""
    if value_type is ValueType.INT64:
        return int(text)
    if value_type is ValueType.DOUBLE:
        return float(text)
    if value_type is ValueType.BOOL:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text.lower() == "true"
    if value_type is ValueType.IP_ADDRESS:
        return ipaddress.ip_address(text)
    if value_type is ValueType.DURATION:
        duration = parse_duration(text)
        if duration is None:
            raise ValueError(f"{text!r} is not a duration")
        return duration
    if value_type is ValueType.TIMESTAMP:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value_type is ValueType.STRING_MAP:
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    if value_type is ValueType.BYTES:
        return text.encode()
    return text
