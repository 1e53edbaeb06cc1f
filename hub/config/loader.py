"""Config documents → a validated, compiled config (nothing started, no backend contacted).

Phase one checks each document's envelope; phase two each handler's params with its
adapter's model, each instance's params against its template, each rule's expressions and
references. All errors of a load are collected and raised together as ConfigErrors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mixerhub.attributes.types import Manifest, ValueType, default_manifest
from mixerhub.config import models as m
from mixerhub.config.compile import CompiledInstance, compile_instance, compile_one
from mixerhub.config.errors import ConfigErrors, Reporter
from mixerhub.ratelimit.config import Domain, is_ratelimit_document, load_domains
from mixerhub.config.files import ConfigError, Document, LineDict, read_all
from mixerhub.expr import CompiledExpression
from mixerhub.plugins import Plugins

DEFAULT_NAMESPACE = "istio-system"
_UNSUPPORTED = {
    "kubernetesenv": "kubernetesenv is not supported: mixerhub has no Kubernetes attribute "
                     "producer; have the proxy send source/destination attributes",
    "kubernetes": "template 'kubernetes' (kubernetesenv's) is not supported",
}
_BOOL = frozenset({ValueType.BOOL})


@dataclasses.dataclass(frozen=True)
class HandlerConfig:
    name: str  # full: name.kind.namespace
    short: str
    namespace: str
    kind: str
    adapter: type
    params: BaseModel
    source: str


@dataclasses.dataclass(frozen=True)
class ActionConfig:
    handler: HandlerConfig
    instances: tuple[CompiledInstance, ...]
    name: str | None


@dataclasses.dataclass(frozen=True)
class HeaderOpConfig:
    name: str
    values: tuple[CompiledExpression, ...]
    operation: str


@dataclasses.dataclass(frozen=True)
class RuleConfig:
    name: str  # name.namespace
    namespace: str
    match: CompiledExpression | None
    actions: tuple[ActionConfig, ...]
    request_ops: tuple[HeaderOpConfig, ...]
    response_ops: tuple[HeaderOpConfig, ...]
    fail_policy: str | None
    shadow: bool
    source: str


@dataclasses.dataclass(frozen=True)
class LoadedConfig:
    handlers: dict[str, HandlerConfig]
    instances: dict[str, CompiledInstance]
    rules: tuple[RuleConfig, ...]
    manifest: Manifest
    quota_specs: tuple[tuple[str, m.QuotaSpecSpec], ...]
    quota_bindings: tuple[tuple[str, m.QuotaSpecBindingSpec], ...]
    default_namespace: str
    documents: int
    files: tuple[str, ...]
    #: envoyproxy/ratelimit descriptor files (top-level ``domain:``), by domain.
    ratelimit_domains: Mapping[str, Domain] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Entry:
    doc: Document
    body: Any
    envelope: m.Envelope
    report: Reporter

    @property
    def namespace(self) -> str:
        return self.envelope.metadata.namespace or ""


def load_config(paths: Iterable[str | Path], plugins: Plugins,
                default_namespace: str = DEFAULT_NAMESPACE) -> LoadedConfig:
    """Read, validate and compile; raises ConfigError (ConfigErrors for many)."""
    paths = list(paths)
    return _Loader(plugins, default_namespace).load(read_all(paths), [str(p) for p in paths])


class _Loader:
    def __init__(self, plugins: Plugins, default_namespace: str) -> None:
        self.plugins = plugins
        self.default_ns = default_namespace
        self.errors: list[str] = []
        self.manifest: Manifest = dict(default_manifest())
        # (name, namespace, kind): Istio 1.4's per-template kinds may share a name
        # (metric "requestcount" and quota "requestcount" are different objects).
        self.handlers: dict[tuple[str, str, str], HandlerConfig] = {}
        self.instances: dict[tuple[str, str, str], CompiledInstance] = {}
        self.seen: dict[tuple[str, str, str, str], str] = {}

    def load(self, docs: Sequence[Document], files: list[str]) -> LoadedConfig:
        domains = load_domains([d for d in docs if is_ratelimit_document(d.body)], self.errors)
        entries = [e for doc in docs if not is_ratelimit_document(doc.body)
                   for e in self._entries(doc)]
        by_kind: dict[str, list[_Entry]] = {}
        for entry in entries:
            by_kind.setdefault(self._category(entry), []).append(entry)
        for entry in by_kind.get("attributemanifest", []):
            self._manifest(entry)
        for entry in by_kind.get("handler", []):
            self._handler(entry)
        for entry in by_kind.get("instance", []):
            self._instance(entry)
        rules = tuple(r for e in by_kind.get("rule", []) if (r := self._rule(e)) is not None)
        specs = self._specs(by_kind.get("QuotaSpec", []), m.QuotaSpecSpec)
        bindings = self._specs(by_kind.get("QuotaSpecBinding", []), m.QuotaSpecBindingSpec)
        if self.errors:
            raise ConfigErrors(self.errors)
        return LoadedConfig(
            handlers={h.name: h for h in self.handlers.values()},
            instances={i.name: i for i in self.instances.values()}, rules=rules,
            manifest=self.manifest, quota_specs=specs, quota_bindings=bindings,
            default_namespace=self.default_ns, documents=len(entries) + len(domains),
            files=tuple(files), ratelimit_domains=domains)

    # -- documents -------------------------------------------------------------------------

    def _entries(self, doc: Document) -> list[_Entry]:
        body = doc.body
        if isinstance(body, LineDict) and body.get("kind") == "List":
            items = body.get("items") or []
            return [e for item in items
                    if (e := self._entry(dataclasses.replace(
                        doc, line=getattr(item, "line", doc.line), body=item))) is not None]
        entry = self._entry(doc)
        return [entry] if entry is not None else []

    def _entry(self, doc: Document) -> _Entry | None:
        body = doc.body
        if not isinstance(body, dict):
            self.errors.append(f"{doc.path}:{doc.line}: a config document must be a mapping")
            return None
        kind = str(body.get("kind", "?"))
        name = str((body.get("metadata") or {}).get("name", "?")) \
            if isinstance(body.get("metadata"), dict) else "?"
        report = Reporter(doc, body, kind, name, self.errors)
        try:
            envelope = m.Envelope.model_validate(body)
        except ValidationError as exc:
            report.validation(exc)
            return None
        if envelope.apiVersion not in m.API_VERSIONS:
            report.error(("apiVersion",), f"unsupported apiVersion {envelope.apiVersion!r} "
                                          f"(supported: {', '.join(m.API_VERSIONS)})")
            return None
        ns = envelope.metadata.namespace or self.default_ns
        envelope = envelope.model_copy(update={
            "metadata": envelope.metadata.model_copy(update={"namespace": ns})})
        return _Entry(doc, body, envelope, report)

    def _category(self, entry: _Entry) -> str:
        kind = entry.envelope.kind
        if kind in ("handler", "instance", "rule", "attributemanifest", "QuotaSpec",
                    "QuotaSpecBinding"):
            return kind
        if kind in _UNSUPPORTED:
            entry.report.error(("kind",), _UNSUPPORTED[kind])
            return "unsupported"
        if self.plugins.adapters.get(kind) is not None:
            return "handler"
        if self.plugins.templates.get(kind) is not None:
            return "instance"
        known = ["handler", "instance", "rule", "attributemanifest", "QuotaSpec",
                 "QuotaSpecBinding", *self.plugins.adapters.names(),
                 *self.plugins.templates.names()]
        entry.report.error(("kind",), f"unknown kind {kind!r} (known: {', '.join(known)})")
        return "unknown"

    def _unique(self, entry: _Entry, category: str) -> bool:
        key = (category, entry.envelope.kind, entry.envelope.metadata.name, entry.namespace)
        where = f"{entry.doc.path}:{entry.doc.line}"
        if key in self.seen:
            entry.report.error(("metadata", "name"), f"duplicate {category} name "
                                                     f"(first defined at {self.seen[key]})")
            return False
        self.seen[key] = where
        return True

    # -- kinds ---------------------------------------------------------------------------

    def _manifest(self, entry: _Entry) -> None:
        spec = self._spec(entry, m.AttributeManifestSpec)
        if spec is None:
            return
        for name, info in spec.attributes.items():
            try:
                self.manifest[name] = ValueType(info.valueType)
            except ValueError:
                entry.report.error(("spec", "attributes", name, "valueType"),
                                   f"unknown value type {info.valueType!r}")

    def _handler(self, entry: _Entry) -> None:
        env = entry.envelope
        legacy = env.kind != "handler"
        loc: tuple[str, ...]
        if legacy:
            adapter_name, params, loc = env.kind, env.spec, ("spec",)
        else:
            spec = self._spec(entry, m.HandlerSpec)
            if spec is None:
                return
            if spec.adapter is not None or spec.connection is not None:
                entry.report.error(("spec", "adapter" if spec.adapter else "connection"),
                                   "out-of-process adapters are not supported; use a "
                                   "compiledAdapter (an adapter plugin)")
                return
            if not spec.compiledAdapter:
                entry.report.error(("spec", "compiledAdapter"), "required")
                return
            adapter_name, params, loc = spec.compiledAdapter, spec.params or {}, ("spec", "params")
        if adapter_name in _UNSUPPORTED:
            entry.report.error(loc[:1] + (("compiledAdapter",) if not legacy else ()),
                               _UNSUPPORTED[adapter_name])
            return
        cls = self.plugins.adapters.get(adapter_name)
        if cls is None:
            entry.report.error(("spec", "compiledAdapter"), f"unknown adapter {adapter_name!r} "
                               f"(known: {', '.join(self.plugins.adapters.names())})")
            return
        try:
            model = cls.Params.model_validate(params)  # type: ignore[attr-defined]
        except ValidationError as exc:
            entry.report.validation(exc, loc)
            return
        if not self._unique(entry, "handler"):
            return
        short, ns = env.metadata.name, entry.namespace
        full = f"{short}.{env.kind}.{ns}"
        self.handlers[(short, ns, env.kind)] = HandlerConfig(full, short, ns, env.kind, cls, model,
                                                   f"{entry.doc.path}:{entry.doc.line}")

    def _instance(self, entry: _Entry) -> None:
        env = entry.envelope
        loc: tuple[str, ...]
        if env.kind != "instance":
            template_name, params, loc = env.kind, env.spec, ("spec",)
        else:
            spec = self._spec(entry, m.InstanceSpec)
            if spec is None:
                return
            if spec.template is not None or spec.attributeBindings is not None:
                entry.report.error(("spec", "template"), "out-of-process templates are not "
                                                         "supported; use a compiledTemplate")
                return
            if not spec.compiledTemplate:
                entry.report.error(("spec", "compiledTemplate"), "required")
                return
            template_name, params, loc = spec.compiledTemplate, spec.params, ("spec", "params")
        if template_name in _UNSUPPORTED:
            entry.report.error(("spec", "compiledTemplate"), _UNSUPPORTED[template_name])
            return
        template = self.plugins.templates.get(template_name)
        if template is None:
            entry.report.error(("spec", "compiledTemplate"), f"unknown template "
                               f"{template_name!r} (known: "
                               f"{', '.join(self.plugins.templates.names())})")
            return
        if not self._unique(entry, "instance"):
            return
        short, ns = env.metadata.name, entry.namespace
        full = f"{short}.{env.kind}.{ns}"
        self.instances[(short, ns, env.kind)] = compile_instance(
            full, short, ns, env.kind, template, params, self.manifest, entry.report, loc)

    def _rule(self, entry: _Entry) -> RuleConfig | None:
        spec = self._spec(entry, m.RuleSpec)
        if spec is None or not self._unique(entry, "rule"):
            return None
        ns, report = entry.namespace, entry.report
        match = None
        if spec.match.strip():
            match = compile_one(spec.match, self.manifest, report, ("spec", "match"), _BOOL)
        actions = tuple(a for i, action in enumerate(spec.actions)
                        if (a := self._action(entry, action, i)) is not None)
        request_ops = self._ops(entry, spec.requestHeaderOperations, "requestHeaderOperations")
        response_ops = self._ops(entry, spec.responseHeaderOperations,
                                 "responseHeaderOperations")
        return RuleConfig(f"{entry.envelope.metadata.name}.{ns}", ns, match, actions,
                          request_ops, response_ops, spec.failPolicy, spec.shadow,
                          f"{entry.doc.path}:{entry.doc.line}")

    def _action(self, entry: _Entry, action: m.Action, i: int) -> ActionConfig | None:
        loc = ("spec", "actions", i)
        handler = _resolve(action.handler, entry.namespace, self.handlers)
        if handler is None:
            entry.report.error((*loc, "handler"), _missing("handler", action.handler,
                                                           entry.namespace, self.handlers))
            return None
        instances = []
        accepted: frozenset[str] = getattr(handler.adapter, "templates", frozenset())
        for j, ref in enumerate(action.instances):
            instance = _resolve(ref, entry.namespace, self.instances)
            if instance is None:
                entry.report.error((*loc, "instances", j), _missing(
                    "instance", ref, entry.namespace, self.instances))
            elif instance.template.name not in accepted:
                entry.report.error((*loc, "instances", j), (
                    f"handler {handler.short!r} (adapter {handler.adapter.name}) does not "
                    f"accept template {instance.template.name!r} "
                    f"(accepts: {', '.join(sorted(accepted))})"))
            else:
                instances.append(instance)
        if len(instances) != len(action.instances):
            return None
        return ActionConfig(handler, tuple(instances), action.name)

    def _ops(self, entry: _Entry, ops: list[m.HeaderOperationTemplate], field: str
             ) -> tuple[HeaderOpConfig, ...]:
        out = []
        for i, op in enumerate(ops):
            values = [compile_one(v, self.manifest, entry.report, ("spec", field, i, "values", j))
                      for j, v in enumerate(op.values)]
            if all(v is not None for v in values):
                out.append(HeaderOpConfig(op.name, tuple(values), op.operation))  # type: ignore[arg-type]
        return tuple(out)

    def _spec(self, entry: _Entry, model: type[Any]) -> Any:
        try:
            return model.model_validate(entry.envelope.spec)
        except ValidationError as exc:
            entry.report.validation(exc, ("spec",))
            return None

    def _specs(self, entries: list[_Entry], model: type[Any]) -> tuple[tuple[str, Any], ...]:
        out = []
        for entry in entries:
            spec = self._spec(entry, model)
            if spec is not None and self._unique(entry, entry.envelope.kind):
                out.append((f"{entry.envelope.metadata.name}.{entry.namespace}", spec))
        return tuple(out)


def _resolve(ref: str, namespace: str, objects: dict[tuple[str, str, str], Any]) -> Any:
    """``name`` (the rule's namespace), ``name.namespace``, ``name.kind`` or
    ``name.kind.namespace`` — the forms Istio 1.4 configs use. A bare name that two kinds
    share resolves to nothing (the error then asks for the kind)."""
    parts = ref.split(".")
    if len(parts) == 1:
        return _only(objects, parts[0], namespace, None)
    if len(parts) == 2:
        found = _only(objects, parts[0], parts[1], None)
        return found if found is not None else _only(objects, parts[0], namespace, parts[1])
    return _only(objects, parts[0], ".".join(parts[2:]), parts[1])


def _missing(what: str, ref: str, namespace: str,
             objects: dict[tuple[str, str, str], Any]) -> str:
    kinds = sorted(k for (n, ns, k) in objects if n == ref and ns == namespace)
    if len(kinds) > 1:
        return (f"{what} name {ref!r} is ambiguous in namespace {namespace!r} (kinds: "
                f"{', '.join(kinds)}): write {ref}.KIND")
    return f"no {what} {ref!r} in namespace {namespace!r}"


def _only(objects: dict[tuple[str, str, str], Any], name: str, namespace: str,
          kind: str | None) -> Any:
    found = [o for (n, ns, k), o in objects.items()
             if n == name and ns == namespace and (kind is None or k == kind)]
    return found[0] if len(found) == 1 else None


__all__ = ["ActionConfig", "ConfigError", "ConfigErrors", "HandlerConfig", "LoadedConfig",
           "RuleConfig", "load_config"]
