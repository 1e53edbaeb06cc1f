"""Text forms of values as Mixer wrote them: Go durations, RFC 3339 times, IP addresses.

Shared by the compiler (duration literals, ``timestamp()``, ``ip()``) and by the conformance
runner, which reads expected values in these forms.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Go's time.ParseDuration units, in nanoseconds ("µ" and "μ" are both accepted by Go).
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")
_INT64_MAX = (1 << 63) - 1

_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})\Z")


def parse_go_duration(text: str) -> dt.timedelta | None:
    """``text`` as Go's ``time.ParseDuration`` reads it ("10ms", "1h30m", "-2.5s", "0"), or None.

    Python keeps microseconds, so nanosecond parts are truncated toward zero.
    """
    ns = _duration_ns(text)
    if ns is None:
        return None
    micros = abs(ns) // 1000
    return dt.timedelta(microseconds=-micros if ns < 0 else micros)


def _duration_ns(text: str) -> int | None:
    body = text.lstrip("+-")
    if len(text) - len(body) > 1:
        return None
    negative = text.startswith("-")
    if body == "0":
        return 0
    total = _duration_body_ns(body)
    if total is None or total > _INT64_MAX + (1 if negative else 0):
        return None
    return -total if negative else total


def _duration_body_ns(body: str) -> int | None:
    total, at = 0, 0
    for part in _DURATION_PART.finditer(body):
        if part.start() != at:
            return None
        whole, frac, unit = part.group(1), part.group(2), part.group(3)
        if unit not in _UNIT_NS or not (whole or frac):
            return None
        scale = _UNIT_NS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        at = part.end()
    return total if at == len(body) and body else None


def parse_rfc3339(text: str) -> dt.datetime | None:
    """An RFC 3339 time ("2015-01-02T15:04:35Z", offsets and fractions allowed) in UTC, or None."""
    found = _RFC3339.match(text)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in found.groups()[:6])
    micros = int((found.group(7) or "0").ljust(9, "0")[:6])
    try:
        stamp = dt.datetime(year, month, day, hour, minute, second, micros, _zone(found.group(8)))
    except ValueError:
        return None
    return stamp.astimezone(dt.UTC)


def _zone(text: str) -> dt.timezone:
    if text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    offset = dt.timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
    return dt.timezone(sign * offset)


def format_rfc3339(value: dt.datetime) -> str:
    """The UTC RFC 3339 text of a time, with a fraction only when there is one."""
    text = value.astimezone(dt.UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_ip(text: str) -> IPAddress | None:
    """A textual IPv4 or IPv6 address as Go's ``net.ParseIP`` accepts it (no zone, no brackets)."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def ip_key(value: object) -> IPAddress | None:
    """The canonical address of an IP value: IPv4-mapped IPv6 and 4/16 raw bytes normalised."""
    if isinstance(value, ipaddress.IPv4Address):
        return value
    if isinstance(value, ipaddress.IPv6Address):
        return value.ipv4_mapped or value
    if isinstance(value, (bytes, bytearray)) and len(value) in (4, 16):
        return ip_key(ipaddress.ip_address(bytes(value)))
    return None
