"""QuotaSpecs: which quotas a caller of a service is charged, as Istio's Mixer clients knew it.

A ``QuotaSpecBinding`` binds ``QuotaSpec``s to services; a ``QuotaSpec`` holds rules, each
with ``match`` clauses and the quotas (and charges) a matching request asks for.

- **Binding → service** (Istio's Pilot): a ``services[]`` entry names a host, either
  ``service`` (a full host name) or ``name`` + ``namespace`` (default: the binding's) +
  ``domain`` (default ``svc.<cluster domain>``). ``service: "*"`` binds every service,
  ``service: "*.NS.*"`` every service whose host contains ``.NS.``. A caller asks by host
  (``reviews.default.svc.cluster.local``) or by short name and namespace; a short name
  without a namespace matches a binding of that name in any namespace.
- **Spec references** default to the binding's namespace; one that names no loaded
  QuotaSpec is skipped and listed in :attr:`QuotaSpecIndex.dangling`.
- **Rules** (Istio's Mixer client): a rule with no ``match`` always applies; otherwise it
  applies when any ``match`` entry matches, and an entry matches when every clause does.
  A clause names a STRING attribute (mixerhub also accepts ``map[key]`` for a string-map
  entry) and holds one of ``exact``, ``prefix`` or ``regex`` (the whole value must match,
  as ``std::regex_match`` did). A missing or non-string attribute never matches.
- **Charges** of one quota named by several applying rules are added up.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mixerhub.attributes.bag import MISSING
from mixerhub.config import models as m
from mixerhub.verdict import QuotaRequest

if TYPE_CHECKING:
    from mixerhub.attributes.bag import AttributeBag
    from mixerhub.config.loader import LoadedConfig

__all__ = ["BoundSpec", "QuotaRules", "QuotaSpecIndex", "ServiceId"]

CLUSTER_DOMAIN = "cluster.local"
#: (name, map key or None) → the value, or MISSING. Lets a bag record what was read.
Lookup = Callable[[str, "str | None"], Any]
_MAP_CLAUSE = re.compile(r"(?P<name>[^\[\]]+)\[(?P<key>[^\[\]]*)\]\Z")


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceId:
    """Who a caller is calling: a host, or a short name with an optional namespace."""

    name: str
    namespace: str | None = None
    host: str | None = None

    @classmethod
    def of(cls, service: str, namespace: str | None = None,
           cluster_domain: str = CLUSTER_DOMAIN) -> ServiceId:
        """``reviews`` (+ namespace) or a host ``reviews.default.svc.cluster.local``."""
        if "." in service:
            labels = service.split(".")
            return cls(labels[0], namespace or labels[1], service)
        host = f"{service}.{namespace}.svc.{cluster_domain}" if namespace else None
        return cls(service, namespace or None, host)


@dataclasses.dataclass(frozen=True, slots=True)
class BoundSpec:
    """One QuotaSpec bound to the service asked about."""

    name: str  # name.namespace
    spec: m.QuotaSpecSpec

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rules": [r.model_dump(exclude_none=True)
                                             for r in self.spec.rules]}


# ---- rules ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class _Clause:
    name: str
    map_key: str | None
    test: Callable[[str], bool]

    def matches(self, lookup: Lookup) -> bool:
        value = lookup(self.name, self.map_key)
        return isinstance(value, str) and self.test(value)


@dataclasses.dataclass(frozen=True, slots=True)
class _Rule:
    matches: tuple[tuple[_Clause, ...], ...]  # any entry; every clause of it
    quotas: tuple[tuple[str, int], ...]

    def applies(self, lookup: Lookup) -> bool:
        if not self.matches:
            return True
        return any(all(c.matches(lookup) for c in entry) for entry in self.matches)


def _test(match: m.StringMatch) -> Callable[[str], bool]:
    if match.exact is not None:
        return match.exact.__eq__
    if match.prefix is not None:
        prefix = match.prefix
        return lambda value: value.startswith(prefix)
    if match.regex is not None:
        pattern = re.compile(match.regex)
        return lambda value: pattern.fullmatch(value) is not None
    return lambda value: False  # a StringMatch that says nothing matches nothing


def _clause(key: str, match: m.StringMatch) -> _Clause:
    found = _MAP_CLAUSE.match(key)
    if found is None:
        return _Clause(key, None, _test(match))
    return _Clause(found["name"], found["key"], _test(match))


def _compile(rule: m.QuotaRule) -> _Rule:
    matches = tuple(tuple(_clause(k, v) for k, v in entry.clause.items())
                    for entry in rule.match)
    return _Rule(matches, tuple((q.quota, q.charge) for q in rule.quotas))


class QuotaRules:
    """The rules of some QuotaSpecs, compiled once (regexes included)."""

    def __init__(self, rules: Iterable[m.QuotaRule]) -> None:
        self._rules = tuple(_compile(r) for r in rules)

    @classmethod
    def of_specs(cls, specs: Iterable[m.QuotaSpecSpec]) -> QuotaRules:
        return cls(rule for spec in specs for rule in spec.rules)

    @classmethod
    def from_json(cls, specs: Sequence[Mapping[str, Any]]) -> QuotaRules:
        """From the ``specs`` of ``GET /v1/quotaspecs`` (raises pydantic's ValidationError)."""
        return cls(m.QuotaRule.model_validate(rule) for spec in specs
                   for rule in spec.get("rules", ()))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def requests(self, values: Mapping[str, Any]) -> dict[str, QuotaRequest]:
        """The quotas (name → amount) a request with these attribute values asks for."""
        return self.requests_with(lambda name, key: _lookup(values, name, key))

    def requests_with(self, lookup: Lookup) -> dict[str, QuotaRequest]:
        charges: dict[str, int] = {}
        for rule in self._rules:
            if rule.applies(lookup):
                for quota, charge in rule.quotas:
                    charges[quota] = charges.get(quota, 0) + charge
        return {name: QuotaRequest(amount) for name, amount in charges.items()}


def _lookup(values: Mapping[str, Any], name: str, key: str | None) -> Any:
    value = values.get(name, MISSING)
    if key is None or value is MISSING:
        return value
    return value.get(key, MISSING) if isinstance(value, Mapping) else MISSING


def _bag_lookup(bag: AttributeBag) -> Lookup:
    return lambda name, key: bag.get(name) if key is None else bag.get_map_key(name, key)


# ---- bindings ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """One ``services[]`` entry of a binding, resolved to a host (or a wildcard)."""

    host: str
    wildcard: bool

    def matches(self, service: ServiceId) -> bool:
        if self.wildcard:
            return self.host == "*" or (service.host is not None
                                        and self.host[1:-1] in service.host)
        if service.host is not None:
            return service.host == self.host
        return self.host.split(".", 1)[0] == service.name


def _target(ref: m.ServiceRef, binding_ns: str, cluster_domain: str) -> _Target | None:
    if ref.service:
        wildcard = "*" in ref.service
        if wildcard and not (ref.service == "*" or (ref.service.startswith("*")
                                                    and ref.service.endswith("*"))):
            return None  # Pilot allows only "*" and "*.ns.*"
        return _Target(ref.service, wildcard)
    if not ref.name:
        return None
    namespace = ref.namespace or binding_ns
    domain = ref.domain or f"svc.{cluster_domain}"
    return _Target(f"{ref.name}.{namespace}.{domain}", False)


@dataclasses.dataclass(frozen=True, slots=True)
class _Binding:
    targets: tuple[_Target, ...]
    specs: tuple[str, ...]  # name.namespace


class QuotaSpecIndex:
    """The QuotaSpecs and bindings of one loaded config, resolved once.

    ``specs_for``/``rules_for`` answer "what is bound to this service" (memoized per
    service); ``requests`` and ``requests_for`` evaluate the rules on a request.
    """

    def __init__(self, config: LoadedConfig, cluster_domain: str = CLUSTER_DOMAIN) -> None:
        self.cluster_domain = cluster_domain
        self._specs = dict(config.quota_specs)
        self._bindings = tuple(self._binding(name, spec) for name, spec in config.quota_bindings)
        self.dangling: tuple[str, ...] = tuple(sorted(
            {s for b in self._bindings for s in b.specs if s not in self._specs}))
        self._rules: dict[ServiceId, QuotaRules] = {}

    def _binding(self, name: str, spec: m.QuotaSpecBindingSpec) -> _Binding:
        namespace = name.rsplit(".", 1)[-1]
        targets = (_target(s, namespace, self.cluster_domain) for s in spec.services)
        refs = tuple(f"{r.name}.{r.namespace or namespace}" for r in spec.quotaSpecs)
        return _Binding(tuple(t for t in targets if t is not None), refs)

    @property
    def bound(self) -> bool:
        """True when the config holds any QuotaSpec: callers that name no quotas are then
        charged what the specs bound to their service say (DESIGN §5)."""
        return bool(self._specs)

    def specs_for(self, service: str, namespace: str | None = None) -> list[BoundSpec]:
        """The QuotaSpecs bound to ``service``, each once, in binding order."""
        wanted = ServiceId.of(service, namespace, self.cluster_domain)
        names: dict[str, None] = {}
        for binding in self._bindings:
            if any(t.matches(wanted) for t in binding.targets):
                names.update((s, None) for s in binding.specs if s in self._specs)
        return [BoundSpec(n, self._specs[n]) for n in names]

    def rules_for(self, service: str, namespace: str | None = None) -> QuotaRules:
        key = ServiceId.of(service, namespace, self.cluster_domain)
        rules = self._rules.get(key)
        if rules is None:
            if len(self._rules) >= 4096:
                self._rules.clear()
            rules = self._rules[key] = QuotaRules.of_specs(
                b.spec for b in self.specs_for(service, namespace))
        return rules

    def requests(self, service: str, namespace: str | None,
                 values: Mapping[str, Any]) -> dict[str, QuotaRequest]:
        """The quotas a request to ``service`` with these attribute values asks for."""
        return self.rules_for(service, namespace).requests(values)

    def requests_for(self, bag: AttributeBag) -> dict[str, QuotaRequest]:
        """Like :meth:`requests`, the service taken from the bag
        (``destination.service.host``, else ``destination.service.name`` and
        ``destination.namespace``); every lookup is recorded on the bag."""
        host = bag.get("destination.service.host")
        if isinstance(host, str) and host:
            rules = self.rules_for(host)
        else:
            name = bag.get("destination.service.name")
            if not isinstance(name, str) or not name:
                return {}
            namespace = bag.get("destination.namespace")
            rules = self.rules_for(name, namespace if isinstance(namespace, str) else None)
        return rules.requests_with(_bag_lookup(bag))

    def to_json(self, service: str, namespace: str | None = None) -> dict[str, Any]:
        """The body of ``GET /v1/quotaspecs``."""
        return {"service": service, "namespace": namespace, "bound": self.bound,
                "specs": [b.to_json() for b in self.specs_for(service, namespace)]}
