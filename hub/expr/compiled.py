"""``compile_expression``: text → parse → type check → generated Python → a callable.

Compile once at config load; call per request. The callable is the generated function
itself (installed as ``__call__`` of a one-off subclass), so ``expr(bag)`` costs one
Python call and no wrapper frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import CodeType
from typing import Any

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import Manifest, ValueType, default_manifest
from mixerhub.expr import runtime
from mixerhub.expr.checker import check
from mixerhub.expr.codegen import FUNCTION_NAME, generate, generate_map
from mixerhub.expr.errors import ExpressionCompileError
from mixerhub.expr.parser import parse


class CompiledExpression:
    """A compiled expression. Call it on an AttributeBag to get the value (or an
    EvaluationError); the look-ups it makes are recorded in ``bag.refs``.

    ``type``: the static ValueType of the result; ``text``: the source text;
    ``attributes``: the attribute names it may read; ``python_source``: the generated code.
    """

    __slots__ = ("attributes", "python_source", "text", "type")

    type: ValueType
    text: str
    attributes: frozenset[str]
    python_source: str

    def __call__(self, bag: AttributeBag) -> Any:
        # Each compiled expression is an instance of a subclass whose __call__ is the
        # generated function; this body only runs on a bare CompiledExpression.
        raise TypeError("CompiledExpression instances come from compile_expression()")

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r}, type={self.type.value})"


def compile_expression(text: str, manifest: Manifest | None = None) -> CompiledExpression:
    """Compile ``text`` against ``manifest`` (default: Istio's attributes plus mixerhub's).

    Raises ExpressionCompileError for bad syntax, unknown attributes or functions, and type
    mismatches; the error's ``position`` is the 0-based column of the offending part.
    """
    if not isinstance(text, str):
        raise ExpressionCompileError(f"an expression must be text, not {type(text).__name__}")
    if manifest is None:
        manifest = default_manifest()
    tree = parse(text)
    checked = check(tree, manifest, text)
    generated = generate(tree, text)
    function = _build(generated.source, generated.constants, text)
    return _instance(function, checked.type, text, checked.attributes, generated.source)


#: What :func:`compile_map` fuses: per key an expression, None, or nested pairs.
MapSpec = Sequence[tuple[str, Any]]


def compile_map(items: MapSpec, manifest: Manifest | None = None
                ) -> Callable[[AttributeBag], dict[str, Any]]:
    """``{key: expression(bag)}`` for every item, as one generated function (measured
    about 2x faster than calling the expressions one by one for a 12-variable logentry).
    A value may also be None (kept as None) or a sequence of (key, expression) pairs (a
    nested dict, as an instance's map fields). Values, references and errors are those
    of the one-by-one path, which the fused function falls back to on any exception."""
    spec = _frozen(items)

    def slow(bag: AttributeBag) -> dict[str, Any]:
        return _one_by_one(spec, bag)

    if manifest is None:
        manifest = default_manifest()
    try:
        generated = generate_map(_trees(spec, manifest))
        namespace = runtime.base_namespace()
        namespace.update(generated.constants)
        namespace["_slow"] = slow
        exec(_code_for(generated.source), namespace)
    except (ExpressionCompileError, SyntaxError, RecursionError, MemoryError):
        return slow  # too big to fuse: one by one is always right
    fused: Callable[[AttributeBag], dict[str, Any]] = namespace[FUNCTION_NAME]
    return fused


def _frozen(items: MapSpec) -> tuple[tuple[str, Any], ...]:
    return tuple((key, item if item is None or isinstance(item, CompiledExpression)
                  else _frozen(item)) for key, item in items)


def _one_by_one(spec: tuple[tuple[str, Any], ...], bag: AttributeBag) -> dict[str, Any]:
    return {key: None if item is None else item(bag) if isinstance(item, CompiledExpression)
            else _one_by_one(item, bag) for key, item in spec}


def _trees(spec: tuple[tuple[str, Any], ...], manifest: Manifest) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, item in spec:
        if item is None:
            out.append((key, None))
        elif isinstance(item, CompiledExpression):
            tree = parse(item.text)
            check(tree, manifest, item.text)
            out.append((key, tree))
        else:
            out.append((key, _trees(item, manifest)))
    return out


def _build(source: str, constants: dict[str, Any], text: str) -> Any:
    namespace = runtime.base_namespace()
    namespace.update(constants)
    namespace["_unexpected"] = runtime.unexpected(text)
    try:
        code = _code_for(source)
    except (SyntaxError, RecursionError, MemoryError) as exc:
        # Only absurd nesting gets here (the parser bounds depth); report it as the author's.
        raise ExpressionCompileError(f"expression is too complex to compile: {exc}", text=text) from None
    exec(code, namespace)
    return namespace[FUNCTION_NAME]


@functools.lru_cache(maxsize=4096)
def _code_for(source: str) -> CodeType:
    # Reloads recompile the same texts; constants differ per expression but arrive as
    # globals, so one code object serves every expression with the same generated source.
    return compile(source, "<cexl>", "exec")


def _instance(
    function: Any, value_type: ValueType, text: str, attributes: frozenset[str], source: str
) -> CompiledExpression:
    cls = type("CompiledExpression", (CompiledExpression,), {"__slots__": (), "__call__": staticmethod(function)})
    compiled: CompiledExpression = cls()
    compiled.type = value_type
    compiled.text = text
    compiled.attributes = attributes
    compiled.python_source = source
    return compiled
