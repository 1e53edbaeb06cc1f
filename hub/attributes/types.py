"""Attribute value types and the manifests that declare them."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import ipaddress
from importlib import resources
from typing import Any

import yaml

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ValueType(enum.Enum):
    """The value types of Mixer's attribute manifests (names as in Istio's YAML)."""

    STRING = "STRING"
    INT64 = "INT64"
    DOUBLE = "DOUBLE"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"
    DURATION = "DURATION"
    BYTES = "BYTES"
    IP_ADDRESS = "IP_ADDRESS"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    URI = "URI"
    DNS_NAME = "DNS_NAME"
    STRING_MAP = "STRING_MAP"


#: Types carried as Python ``str``.
TEXT_TYPES = frozenset({ValueType.STRING, ValueType.EMAIL_ADDRESS, ValueType.URI, ValueType.DNS_NAME})


def type_of_value(value: Any) -> ValueType:
    """The natural value type of a Python value held in a bag."""
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, int):
        return ValueType.INT64
    if isinstance(value, float):
        return ValueType.DOUBLE
    if isinstance(value, dt.datetime):
        return ValueType.TIMESTAMP
    if isinstance(value, dt.timedelta):
        return ValueType.DURATION
    if isinstance(value, bytes):
        return ValueType.BYTES
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return ValueType.IP_ADDRESS
    if isinstance(value, dict):
        return ValueType.STRING_MAP
    raise TypeError(f"no attribute type holds a {type(value).__name__}")


Manifest = dict[str, ValueType]


def parse_manifest_documents(documents: list[Any]) -> Manifest:
    """Collect ``attributemanifest`` documents into one name → type mapping."""
    manifest: Manifest = {}
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "attributemanifest":
            continue
        for name, spec in (doc.get("spec") or {}).get("attributes", {}).items():
            manifest[name] = ValueType(spec["valueType"])
    return manifest


@functools.cache
def default_manifest() -> Manifest:
    """Istio 1.4's attribute manifests plus mixerhub's additions (package data)."""
    data = resources.files("mixerhub") / "data"
    documents: list[Any] = []
    for name in ("istio_attributes.yaml", "mixerhub_attributes.yaml"):
        documents.extend(yaml.safe_load_all(data.joinpath(name).read_text(encoding="utf-8")))
    return parse_manifest_documents(documents)


def names_of_type(manifest: Manifest, value_type: ValueType) -> frozenset[str]:
    return frozenset(name for name, t in manifest.items() if t is value_type)
