"""Secrets never leave the hub in clear (logs, Kafka records, recorded traffic, /debug).

Keys are matched case-insensitively at any depth of a mapping; policies still see the
real values because redaction happens only on the way out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
DEFAULT_SECRET_KEYS = frozenset({
    "authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization",
    "request.api_key", "api_key", "apikey",
})


class Redactor:
    def __init__(self, keys: Iterable[str] = DEFAULT_SECRET_KEYS) -> None:
        self.keys = frozenset(k.lower() for k in keys)

    def __call__(self, value: Any) -> Any:
        """A copy of ``value`` with secret keys' values replaced; other values as they are."""
        if isinstance(value, Mapping):
            return {k: REDACTED if isinstance(k, str) and k.lower() in self.keys else self(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


default_redactor = Redactor()
