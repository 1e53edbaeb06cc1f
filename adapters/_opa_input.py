"""The ``input`` documents the opa adapter hands a policy, built from an authorization
instance: Istio's shape (the instance itself) or OPA-Envoy's (docs/adapters/opa.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import parse_qs, unquote

from mixerhub.jsonform import to_json

#: action.properties keys that fill OPA-Envoy's request.http; the rest go to
#: attributes.contextExtensions.
_HTTP_KEYS = ("host", "scheme", "protocol", "id", "body", "size")
_VERSION = {"encoding": "protojson", "ext_authz": "v3"}


def authorization_input(instance: Any) -> dict[str, Any]:
    """Istio's OPA adapter input: ``input.subject`` and ``input.action``, absent fields left
    out (undefined in Rego)."""
    return cast("dict[str, Any]", _without_none(to_json(instance.as_dict())))


def envoy_input(instance: Any) -> dict[str, Any]:
    """OPA-Envoy's input: ``input.attributes.{source,destination,request.http}``,
    ``input.parsed_path``, ``input.parsed_query``, ``input.parsed_body``."""
    subject = instance.subject.as_dict() if instance.subject is not None else {}
    action = instance.action.as_dict() if instance.action is not None else {}
    subject_props = dict(subject.get("properties") or {})
    action_props = dict(action.get("properties") or {})
    http = _http(action, action_props)
    attributes: dict[str, Any] = {
        "source": _peer(subject_props.pop("source.ip", None),
                        subject_props.pop("source.port", None), subject.get("user")),
        "destination": _peer(action_props.pop("destination.ip", None),
                             action_props.pop("destination.port", None),
                             action_props.pop("destination.principal", None)),
        "request": {"http": http},
    }
    if action_props:
        attributes["contextExtensions"] = {k: _text(v) for k, v in action_props.items()}
    path = http.get("path", "")
    return {"attributes": attributes, "parsed_path": parsed_path(path),
            "parsed_query": parsed_query(path), "parsed_body": _parsed_body(http),
            "truncated_body": False, "version": _VERSION}


def _http(action: Mapping[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    headers = {str(k).lower(): _text(v) for k, v in (props.pop("headers", None) or {}).items()}
    for key in [k for k in props if k.startswith("headers.")]:
        value = props.pop(key)
        if value is not None:
            headers[key[len("headers."):].lower()] = _text(value)
    http: dict[str, Any] = {"headers": headers}
    if action.get("method") is not None:
        http["method"] = _text(action["method"])
    if action.get("path") is not None:
        http["path"] = _text(action["path"])
    for key in _HTTP_KEYS:
        value = props.pop(key, None)
        if value is not None:
            http[key] = value if key == "size" else _text(value)
    return http


def _peer(ip: Any, port: Any, principal: Any) -> dict[str, Any]:
    peer: dict[str, Any] = {}
    if ip is not None:
        address: dict[str, Any] = {"address": _text(ip)}
        if port is not None:
            address["portValue"] = int(port)
        peer["address"] = {"socketAddress": address}
    if principal is not None:
        peer["principal"] = _text(principal)
    return peer


def parsed_path(path: str) -> list[str]:
    """``/people/a%20b?x=1`` → ``["people", "a b"]`` (as OPA-Envoy splits it)."""
    return [unquote(part) for part in path.split("?", 1)[0].lstrip("/").split("/")]


def parsed_query(path: str) -> dict[str, list[str]]:
    """``?a=1&a=2&b`` → ``{"a": ["1", "2"], "b": [""]}``."""
    return parse_qs(path.partition("?")[2], keep_blank_values=True)


def _parsed_body(http: Mapping[str, Any]) -> Any:
    body = http.get("body")
    if not body or "json" not in http["headers"].get("content-type", ""):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _text(value: Any) -> str:
    converted = to_json(value)
    return converted if isinstance(converted, str) else json.dumps(converted)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value
