"""Types of the C record writer (_render.c); used by records.RecordRenderer."""

from collections.abc import Callable
from typing import Any

def render(
    head: bytes,
    id: str,
    middle: bytes,
    when: object,
    when_text: str,
    reporter: object,
    fields: dict[str, Any],
    secret: set[str] | frozenset[str],
    lowered: dict[str, bool],
    default: Callable[[Any], object],
    redacted: str,
    /,
) -> bytes | None:
    """head + id + middle + when_text + reporter + fields as one JSON record value, or
    None when the record needs the Python path."""
