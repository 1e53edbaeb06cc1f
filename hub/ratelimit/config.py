"""Descriptor YAML: a file whose top level has ``domain:`` (envoyproxy/ratelimit's format).

Each domain is a tree of descriptors (``key`` with an optional ``value``, a
``rate_limit``, nested ``descriptors``). A request descriptor (a list of key/value
entries) walks the tree one entry per level, preferring ``key_value``, then a ``value``
ending in ``*`` that prefixes the value, then the bare ``key``; the limit of the node
reached by the last entry applies. Unknown keys, duplicates and bad units are errors that
name the file and line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mixerhub.config.files import Document, LineDict

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400, "week": 604_800,
         "month": 2_592_000, "year": 31_536_000}
_TOP_KEYS = frozenset({"domain", "descriptors"})
_DESCRIPTOR_KEYS = frozenset({"key", "value", "rate_limit", "descriptors", "shadow_mode",
                              "detailed_metric", "quota_mode", "metadata"})
_LIMIT_KEYS = frozenset({"unit", "requests_per_unit", "unlimited", "name", "replaces"})


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """One limit: ``requests_per_unit`` per ``unit`` (fixed windows), or unlimited."""

    requests_per_unit: int
    unit: str
    name: str = ""
    unlimited: bool = False
    replaces: tuple[str, ...] = ()
    shadow: bool = False
    quota_mode: bool = False
    full_key: str = ""

    @property
    def seconds(self) -> int:
        return UNITS.get(self.unit, 1)


@dataclasses.dataclass
class Node:
    limit: RateLimit | None
    children: dict[str, Node]
    prefixes: list[tuple[str, str, Node]]  # (key, value prefix, node) of `value: abc*`


@dataclasses.dataclass(frozen=True)
class Domain:
    name: str
    root: Node
    path: str

    def find(self, entries: Sequence[tuple[str, str]]) -> RateLimit | None:
        """The limit a request descriptor gets, or None (not limited)."""
        node = self.root
        for key, value in entries:
            found = node.children.get(f"{key}_{value}")
            if found is None:
                found = next((n for k, prefix, n in node.prefixes
                              if k == key and value.startswith(prefix)), None)
            if found is None:
                found = node.children.get(key)
            if found is None:
                return None
            node = found
        return node.limit if entries else None


def is_ratelimit_document(body: Any) -> bool:
    return isinstance(body, Mapping) and "domain" in body and "kind" not in body \
        and "apiVersion" not in body


class _Parser:
    def __init__(self, doc: Document, errors: list[str]) -> None:
        self.doc = doc
        self.errors = errors
        self.domain = ""

    def error(self, where: Any, key: Any, message: str) -> None:
        line = where.line_of(key) if isinstance(where, LineDict) else self.doc.line
        prefix = f"ratelimit domain {self.domain!r}: " if self.domain else "ratelimit: "
        self.errors.append(f"{self.doc.path}:{line}: {prefix}{message}")

    def domain_of(self) -> Domain | None:
        body = self.doc.body
        self.domain = str(body.get("domain") or "")
        if not isinstance(body.get("domain"), str) or not body["domain"]:
            self.error(body, "domain", "config error, domain must be a non-empty string")
            return None
        self._unknown(body, _TOP_KEYS)
        before = len(self.errors)
        root = Node(None, {}, [])
        self._descriptors(body, body.get("descriptors") or [], root, self.domain)
        return Domain(self.domain, root, self.doc.path) if len(self.errors) == before else None

    def _unknown(self, mapping: Mapping[str, Any], known: frozenset[str]) -> None:
        for key in mapping:
            if key not in known:
                self.error(mapping, key, f"config error, unknown key '{key}'")

    def _descriptors(self, parent: Any, items: Any, into: Node, prefix: str) -> None:
        if not isinstance(items, list):
            self.error(parent, "descriptors", "config error, descriptors must be a list")
            return
        for item in items:
            self._descriptor(item, into, prefix)

    def _descriptor(self, item: Any, into: Node, prefix: str) -> None:
        if not isinstance(item, LineDict):
            self.error(None, None, "config error, a descriptor must be a mapping")
            return
        self._unknown(item, _DESCRIPTOR_KEYS)
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or not key:
            self.error(item, "key", "config error, descriptor has empty key")
            return
        if value is not None and not isinstance(value, (str, int, float, bool)):
            self.error(item, "value", "config error, value must be a scalar")
            return
        value = None if value is None else str(value)
        composite = key if value is None else f"{key}_{value}"
        full_key = f"{prefix}.{composite}"
        if composite in into.children or any(
                k == key and p + "*" == value for k, p, _ in into.prefixes):
            self.error(item, "key", f"duplicate descriptor composite key '{full_key}'")
            return
        node = Node(self._limit(item, full_key), {}, [])
        if value is not None and value.endswith("*"):
            into.prefixes.append((key, value[:-1], node))
        else:
            into.children[composite] = node
        if "descriptors" in item:
            self._descriptors(item, item["descriptors"], node, full_key)

    def _limit(self, item: LineDict, full_key: str) -> RateLimit | None:
        spec = item.get("rate_limit")
        for flag in ("shadow_mode", "detailed_metric", "quota_mode"):
            if flag in item and not isinstance(item[flag], bool):
                self.error(item, flag, f"config error, {flag} must be true or false")
        if spec is None:
            return None
        if not isinstance(spec, LineDict):
            self.error(item, "rate_limit", "config error, rate_limit must be a mapping")
            return None
        self._unknown(spec, _LIMIT_KEYS)
        unlimited = spec.get("unlimited") is True
        unit, per_unit = spec.get("unit"), spec.get("requests_per_unit", 0)
        if unlimited and unit is not None:
            self.error(spec, "unit", f"config error, should not specify rate limit unit "
                                     f"when unlimited ('{full_key}')")
            return None
        if not unlimited and str(unit).lower() not in UNITS:
            self.error(spec, "unit", f"config error, invalid rate limit unit '{unit}' "
                                     f"(one of: {', '.join(UNITS)})")
            return None
        if not isinstance(per_unit, int) or isinstance(per_unit, bool) or per_unit < 0:
            self.error(spec, "requests_per_unit",
                       "config error, requests_per_unit must be a non-negative integer")
            return None
        return RateLimit(per_unit, "" if unlimited else str(unit).lower(),
                         str(spec.get("name") or ""), unlimited, self._replaces(spec),
                         item.get("shadow_mode") is True, item.get("quota_mode") is True,
                         full_key)

    def _replaces(self, spec: LineDict) -> tuple[str, ...]:
        out = []
        for entry in spec.get("replaces") or []:
            if not isinstance(entry, LineDict) or not entry.get("name"):
                self.error(spec, "replaces", "config error, replaces entries need a name")
                continue
            self._unknown(entry, frozenset({"name"}))
            out.append(str(entry["name"]))
        return tuple(out)


def load_domains(docs: Sequence[Document], errors: list[str]) -> dict[str, Domain]:
    """Every descriptor-YAML document as a domain; a domain defined twice is an error."""
    domains: dict[str, Domain] = {}
    for doc in docs:
        domain = _Parser(doc, errors).domain_of()
        if domain is None:
            continue
        if domain.name in domains:
            errors.append(f"{doc.path}:{doc.line}: ratelimit domain {domain.name!r}: "
                          f"duplicate domain (first in {domains[domain.name].path})")
            continue
        domains[domain.name] = domain
    return domains
