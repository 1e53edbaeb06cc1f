"""A protobuf wire writer and reader written only from the field facts of the Mixer v1
protos (docs/wire.md), independent of the generated code, to prove wire compatibility."""

from __future__ import annotations

from typing import Any

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def f_varint(field: int, n: int) -> bytes:
    return tag(field, VARINT) + varint(n)


def f_sint(field: int, n: int) -> bytes:
    return f_varint(field, zigzag(n))


def f_len(field: int, payload: bytes) -> bytes:
    return tag(field, LEN) + varint(len(payload)) + payload


def f_str(field: int, text: str) -> bytes:
    return f_len(field, text.encode())


def map_entry(field: int, key: bytes, value: bytes) -> bytes:
    """A map entry is a message with the key as field 1 and the value as field 2."""
    return f_len(field, key + value)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def parse(buf: bytes) -> dict[int, list[Any]]:
    """Field number → values (varints as int, length-delimited as bytes)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire_type == LEN:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire_type == I64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire_type == I32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire_type}")
        fields.setdefault(field, []).append(value)
    return fields


def first(fields: dict[int, list[Any]], field: int, default: Any = None) -> Any:
    values = fields.get(field)
    return values[-1] if values else default
