"""Header handling shared by the proxy and the middlewares: hop-by-hop hygiene,
``x-forwarded-*``, ``x-request-id``, and the hub's header operations."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from multidict import CIMultiDict

from mixerhub.verdict import HeaderOp, HeaderOperation

#: RFC 9110 §7.6.1 connection-specific fields; never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding",
                        "upgrade"})


def end_to_end(headers: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """A copy without hop-by-hop fields, nor any field the Connection header names."""
    pairs = list(headers)
    named = {token.strip().lower() for name, value in pairs if name.lower() == "connection"
             for token in value.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        lower = name.lower()
        if lower not in HOP_BY_HOP and lower not in named:
            out.add(name, value)
    return out


def forward(headers: CIMultiDict[str], peer_ip: str | None, scheme: str, host: str) -> None:
    """Append the peer to ``x-forwarded-for``; say the scheme and host the client used."""
    if peer_ip:
        previous = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{previous}, {peer_ip}" if previous else peer_ip
    headers["x-forwarded-proto"] = scheme
    if host:
        headers["x-forwarded-host"] = host


def request_id(headers: CIMultiDict[str]) -> str:
    """The request's ``x-request-id``, generated (and set) when missing."""
    found = headers.get("x-request-id")
    if found:
        return found
    rid = str(uuid.uuid4())
    headers["x-request-id"] = rid
    return rid


def apply_ops(headers: CIMultiDict[str], ops: Iterable[HeaderOp]) -> None:
    """REPLACE sets (dropping other values), REMOVE deletes, APPEND adds a value."""
    for op in ops:
        if op.operation is HeaderOperation.REMOVE:
            headers.popall(op.name, None)
        elif op.operation is HeaderOperation.APPEND:
            headers.add(op.name, op.value)
        else:
            headers[op.name] = op.value
