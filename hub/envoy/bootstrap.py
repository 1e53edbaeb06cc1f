"""``mixerhub envoy-config``: a complete Envoy v3 bootstrap that puts the hub in front of
an upstream, as ext_authz (every request asks the hub over gRPC) or as the caching Lua
filter (most requests are answered from Envoy's own memory).

Both modes stream access logs to the hub's AccessLogService (reports) and, with
``ratelimit``, ask its RateLimitService. Per-route ``context_extensions`` carry the fixed
attributes (``--attribute destination.service.host=…``) to ext_authz; the Lua filter gets
them in its configuration table.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

import yaml

from mixerhub.app import split_hostport
from mixerhub.attributes.types import Manifest, ValueType, default_manifest
from mixerhub.envoy.attributes import from_text
from mixerhub.jsonform import to_json
from mixerhub.proxy_filter.envoy import lua_source

_T = "type.googleapis.com/"
HUB_GRPC, HUB_HTTP, UPSTREAM = "mixerhub_grpc", "mixerhub_http", "upstream"
#: Request headers the access log sends along (Envoy logs none unless asked).
LOGGED_REQUEST_HEADERS = ("content-type", "x-request-id", "user-agent", "referer")
LOGGED_RESPONSE_HEADERS = ("content-type", "content-length")


@dataclasses.dataclass(frozen=True)
class EnvoyOptions:
    hub: str                     # gRPC HOST:PORT
    listen: str
    upstream: str
    hub_http: str | None = None  # HTTP HOST:PORT (Lua mode)
    mode: str = "ext_authz"      # or "lua"
    fail_open: bool = False
    ratelimit: bool = False
    ratelimit_domain: str = "mixerhub"
    #: request header → descriptor key; replaces the default descriptor (the destination
    #: service as ``generic_key``, then ``remote_address``).
    ratelimit_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    admin: str = "127.0.0.1:9901"
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout_ms: int = 500
    cache_entries: int = 10_000


def bootstrap(opts: EnvoyOptions, manifest: Manifest | None = None) -> dict[str, Any]:
    """The bootstrap as a dict (``render`` makes it YAML)."""
    if opts.mode not in ("ext_authz", "lua"):
        raise ValueError(f"mode must be ext_authz or lua, not {opts.mode!r}")
    if opts.mode == "lua" and not opts.hub_http:
        raise ValueError("lua mode needs the hub's HTTP address (--hub-http)")
    typed = typed_attributes(opts.attributes, manifest or default_manifest())
    clusters = [_cluster(HUB_GRPC, opts.hub, http2=True), _cluster(UPSTREAM, opts.upstream)]
    if opts.hub_http:
        clusters.append(_cluster(HUB_HTTP, opts.hub_http))
    return {
        "node": {"id": "mixerhub-envoy", "cluster": "mixerhub-envoy"},
        "admin": {"address": _address(opts.admin)},
        "static_resources": {"listeners": [_listener(opts, typed)], "clusters": clusters},
    }


def render(opts: EnvoyOptions, manifest: Manifest | None = None) -> str:
    header = (f"# Envoy bootstrap by `mixerhub envoy-config` (mode {opts.mode}); "
              "check it with: envoy --mode validate -c FILE\n")
    return header + yaml.safe_dump(bootstrap(opts, manifest), sort_keys=False, width=100)


def typed_attributes(attributes: Mapping[str, str], manifest: Manifest) -> dict[str, Any]:
    """``NAME=VALUE`` texts as typed values (an undeclared name is a STRING)."""
    out = {}
    for name, text in attributes.items():
        value_type = manifest.get(name, ValueType.STRING)
        try:
            out[name] = from_text(value_type, text)
        except ValueError as exc:
            raise ValueError(f"--attribute {name}={text}: not a {value_type.value}: {exc}"
                             ) from None
    return out


def _address(hostport: str) -> dict[str, Any]:
    host, port = split_hostport(hostport)
    return {"socket_address": {"address": host, "port_value": port}}


def _cluster(name: str, hostport: str, http2: bool = False) -> dict[str, Any]:
    host, _ = split_hostport(hostport)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(hostport)}}]}]},
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _listener(opts: EnvoyOptions, typed: Mapping[str, Any]) -> dict[str, Any]:
    route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM}}
    if opts.ratelimit:
        route["route"]["rate_limits"] = [{"actions": _ratelimit_actions(opts, typed)}]
    if opts.mode == "ext_authz" and typed:
        route["typed_per_filter_config"] = {"envoy.filters.http.ext_authz": {
            "@type": _T + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
            "check_settings": {"context_extensions": {
                name: opts.attributes[name] for name in typed}}}}
    manager = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3."
                      "HttpConnectionManager",
        "stat_prefix": "mixerhub",
        "access_log": [_access_log(opts)],
        "route_config": {"name": "local", "virtual_hosts": [
            {"name": "upstream", "domains": ["*"], "routes": [route]}]},
        "http_filters": [*_filters(opts, typed), {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": _T + "envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {"name": "mixerhub", "address": _address(opts.listen), "filter_chains": [
        {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                      "typed_config": manager}]}]}


def _ratelimit_actions(opts: EnvoyOptions, typed: Mapping[str, Any]) -> list[dict[str, Any]]:
    if opts.ratelimit_headers:
        return [{"request_headers": {"header_name": header, "descriptor_key": key}}
                for header, key in opts.ratelimit_headers.items()]
    service = str(typed.get("destination.service.host", "upstream"))
    return [{"generic_key": {"descriptor_value": service}}, {"remote_address": {}}]


def _access_log(opts: EnvoyOptions) -> dict[str, Any]:
    return {"name": "envoy.access_loggers.http_grpc", "typed_config": {
        "@type": _T + "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
        "common_config": {
            "log_name": "mixerhub", "transport_api_version": "V3",
            "grpc_service": {"envoy_grpc": {"cluster_name": HUB_GRPC}},
            "custom_tags": [{"tag": "mixerhub.mode", "literal": {"value": opts.mode}}]},
        "additional_request_headers_to_log": list(LOGGED_REQUEST_HEADERS),
        "additional_response_headers_to_log": list(LOGGED_RESPONSE_HEADERS)}}


def _filters(opts: EnvoyOptions, typed: Mapping[str, Any]) -> list[dict[str, Any]]:
    filters = [_ext_authz(opts) if opts.mode == "ext_authz" else _lua(opts, typed)]
    if opts.ratelimit:
        filters.append({"name": "envoy.filters.http.ratelimit", "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": opts.ratelimit_domain,
            "timeout": f"{opts.timeout_ms / 1000:.3f}s",
            "failure_mode_deny": not opts.fail_open,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {"transport_api_version": "V3", "grpc_service": {
                "envoy_grpc": {"cluster_name": HUB_GRPC}}}}})
    return filters


def _ext_authz(opts: EnvoyOptions) -> dict[str, Any]:
    return {"name": "envoy.filters.http.ext_authz", "typed_config": {
        "@type": _T + "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": HUB_GRPC},
                         "timeout": f"{opts.timeout_ms / 1000:.3f}s"},
        "failure_mode_allow": opts.fail_open,
        "status_on_error": {"code": "ServiceUnavailable"},
        "include_peer_certificate": True}}


def _lua(opts: EnvoyOptions, typed: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": _T + "envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": lua_config(opts, typed) + lua_source()}}}


def lua_config(opts: EnvoyOptions, typed: Mapping[str, Any]) -> str:
    """The ``MIXERHUB`` table the Lua filter reads (see mixerhub.lua)."""
    static = ", ".join(
        "{%s, %s, %s}" % (_lua_str(name), _lua_str(_text(value)),
                          _lua_str(json.dumps(to_json(value))))
        for name, value in typed.items())
    return (f"local MIXERHUB = {{cluster = {_lua_str(HUB_HTTP)}, authority = \"mixerhub\", "
            f"timeout_ms = {opts.timeout_ms}, fail_open = {str(opts.fail_open).lower()}, "
            f"max_entries = {opts.cache_entries}, static = {{{static}}}}}\n")


def _text(value: Any) -> str:
    converted = to_json(value)
    return converted if isinstance(converted, str) else json.dumps(converted)


def _lua_str(text: str) -> str:
    """A Lua 5.1 string literal: printable ASCII as is, every other byte as ``\\ddd``."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'
