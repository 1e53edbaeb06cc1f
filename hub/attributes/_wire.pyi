"""Types of the C report decoder (_wire.c); used by compression.Decoder.decode_report_bytes."""

from collections.abc import Callable
from typing import Any

from _typeshed import ReadableBuffer

def decode_report(
    raw: ReadableBuffer,
    dictionary: tuple[str, ...],
    make_time: Callable[[int, int], object],
    make_duration: Callable[[int, int], object],
    make_bytes: Callable[[str, bytes], object],
    /,
) -> list[dict[str, Any]] | None:
    """One attribute dict per message of a ReportRequest, or None: decode it in Python."""
