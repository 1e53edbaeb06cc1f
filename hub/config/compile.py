"""Compiling instance params and rule expressions (phase two of validation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import Manifest, ValueType
from mixerhub.config.errors import Reporter
from mixerhub.expr import (CompiledExpression, ExpressionCompileError, compile_expression,
                           compile_map)
from mixerhub.templates.instance import Instance
from mixerhub.templates.model import Field, Template

Builder = Callable[[AttributeBag], Any]


def expression_text(value: Any) -> str | None:
    """YAML scalars are expressions: ``value: 1`` means the expression ``1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def compile_one(text: Any, manifest: Manifest, report: Reporter, loc: tuple[Any, ...],
                types: frozenset[ValueType] | None = None) -> CompiledExpression | None:
    source = expression_text(text)
    if source is None:
        report.error(loc, f"expected an expression, got {type(text).__name__}")
        return None
    try:
        compiled = compile_expression(source, manifest)
    except ExpressionCompileError as exc:
        report.error(loc, f"{exc} in {source!r}")
        return None
    if types is not None and compiled.type not in types:
        wanted = " or ".join(sorted(t.value for t in types))
        report.error(loc, f"type mismatch: {source!r} is {compiled.type.value}, "
                          f"the field needs {wanted}")
        return None
    return compiled


def _map_builder(exprs: Mapping[str, CompiledExpression], manifest: Manifest) -> Builder:
    pairs = tuple(exprs.items())
    build: Any = compile_map(pairs, manifest)
    build.fusable = pairs  # an instance of plain fields fuses its maps too
    return build  # type: ignore[no-any-return]


def _struct_builder(name: str, template: str, parts: Mapping[str, Builder | None],
                    manifest: Manifest | None = None) -> Callable[[AttributeBag], Instance]:
    items = tuple(parts.items())
    adopt = Instance.adopt
    spec = _fusable(items) if manifest is not None else None
    if spec is not None:  # every field an expression, a map of them, or left out
        fields = compile_map(spec, manifest)

        def fused(bag: AttributeBag) -> Instance:
            return adopt(name, template, fields(bag))
        return fused

    def build(bag: AttributeBag) -> Instance:
        return adopt(name, template, {k: None if b is None else b(bag) for k, b in items})
    return build


def _fusable(items: tuple[tuple[str, Builder | None], ...]) -> list[tuple[str, Any]] | None:
    spec: list[tuple[str, Any]] = []
    for key, builder in items:
        if builder is None or isinstance(builder, CompiledExpression):
            spec.append((key, builder))
        elif getattr(builder, "fusable", None) is not None:
            spec.append((key, builder.fusable))  # type: ignore[attr-defined]
        else:
            return None  # a nested struct: built on its own
    return spec


def compile_fields(fields: tuple[Field, ...], params: Any, manifest: Manifest,
                   report: Reporter, loc: tuple[Any, ...]) -> dict[str, Builder | None]:
    """Field name → builder (None for a field the params leave out)."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        report.error(loc, f"expected a mapping, got {type(params).__name__}")
        return {}
    known = {f.name: f for f in fields}
    for key in params:
        if key not in known:
            report.error((*loc, key), f"unknown field {key!r} (fields: "
                                      f"{', '.join(known) or 'none'})")
    return {f.name: _compile_field(f, params.get(f.name), manifest, report, (*loc, f.name))
            for f in fields}


def _compile_field(field: Field, value: Any, manifest: Manifest, report: Reporter,
                   loc: tuple[Any, ...]) -> Builder | None:
    if field.kind == "struct":
        parts = compile_fields(field.fields, value, manifest, report, loc)
        return _struct_builder(field.name, field.name, parts)
    if value is None:
        return None
    if field.kind == "map":
        if not isinstance(value, Mapping):
            report.error(loc, f"expected a map of expressions, got {type(value).__name__}")
            return None
        exprs = {str(k): compile_one(v, manifest, report, (*loc, k)) for k, v in value.items()}
        if any(e is None for e in exprs.values()):
            return None
        return _map_builder(exprs, manifest)  # type: ignore[arg-type]
    return compile_one(value, manifest, report, loc, field.types)


@dataclasses.dataclass(frozen=True)
class CompiledInstance:
    """An instance config: builds an Instance from a bag (EvaluationError on failure)."""

    name: str  # full name: name.kind.namespace
    short: str
    namespace: str
    kind: str
    template: Template
    build: Callable[[AttributeBag], Instance]


def compile_instance(full_name: str, short: str, namespace: str, kind: str,
                     template: Template, params: Any, manifest: Manifest, report: Reporter,
                     loc: tuple[Any, ...]) -> CompiledInstance:
    parts = compile_fields(template.fields, params, manifest, report, loc)
    return CompiledInstance(full_name, short, namespace, kind, template,
                            _struct_builder(full_name, template.name, parts, manifest))
