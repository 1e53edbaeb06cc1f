"""compile_map: several expressions as one generated function must give exactly what the
expressions give one by one — values, references, and errors — on every case of Mixer's
expression table, alone and fused with its neighbours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mixerhub.attributes.bag import AttributeBag
from mixerhub.expr import CompiledExpression, ExpressionCompileError, compile_expression, compile_map
from mixerhub.expr.cases import decode_attributes, load_case_file

TABLE = Path(__file__).resolve().parent.parent / "data" / "cexl_conformance.yaml"
CASE_FILE = load_case_file(TABLE)


def compiled_cases() -> list[tuple[dict[str, Any], CompiledExpression]]:
    out = []
    for case in CASE_FILE.cases:
        if "skip" in case or "want_compile_error" in case:
            continue
        manifest = CASE_FILE.manifests[case.get("manifest", "default")]
        try:
            out.append((case, compile_expression(case["expr"], manifest)))
        except ExpressionCompileError:
            continue
    return out


CASES = compiled_cases()


def outcome(fn: Any, values: dict[str, Any]) -> tuple[Any, Any]:
    bag = AttributeBag(values)
    try:
        result: Any = fn(bag)
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        result = (type(exc).__name__, str(exc))
    return result, dict(bag.refs)


def one_by_one(items: list[tuple[str, CompiledExpression]]) -> Any:
    return lambda bag: {key: expr(bag) for key, expr in items}


def test_the_table_gives_enough_cases() -> None:
    assert len(CASES) > 380


@pytest.mark.parametrize("start", range(0, len(CASES), 7))
def test_fused_equals_one_by_one(start: int) -> None:
    group = CASES[start:start + 7]
    for case, _ in group:  # each bag against the whole group: misses and errors included
        manifest = CASE_FILE.manifests[case.get("manifest", "default")]
        items = [(f"f{i}", c) for i, (other, c) in enumerate(group)
                 if other.get("manifest", "default") == case.get("manifest", "default")]
        values = decode_attributes(case.get("attributes") or {})
        assert outcome(compile_map(items, manifest), values) == \
            outcome(one_by_one(items), values), case["expr"]


def test_an_error_names_the_expression_that_failed() -> None:
    items = [("a", compile_expression('request.path | ""')),
             ("b", compile_expression("response.code")),
             ("c", compile_expression("source.uid"))]
    fused = compile_map(items)
    with pytest.raises(Exception, match="response.code"):
        fused(AttributeBag({"request.path": "/x"}))
    assert fused(AttributeBag({"response.code": 200, "source.uid": "u"})) == {
        "a": "", "b": 200, "c": "u"}


def test_fused_is_one_function_call() -> None:
    items = [("a", compile_expression('request.path | ""')),
             ("b", compile_expression('request.headers["x-user"] | "none"'))]
    fused = compile_map(items)
    assert fused.__code__.co_filename == "<cexl>"  # generated, not the one-by-one closure


DEFAULT_CASES = [c for c in CASES if c[0].get("manifest", "default") == "default"]


@pytest.mark.parametrize("start", range(0, len(DEFAULT_CASES) - 5, 11))
def test_nested_fields_fuse_like_one_by_one(start: int) -> None:
    # An instance's shape: plain fields, a map of expressions, a field left out.
    group = DEFAULT_CASES[start:start + 6]
    spec = [("first", group[0][1]), ("map", [(f"k{i}", c) for i, (_, c) in enumerate(group[1:])]),
            ("absent", None)]

    def by_hand(bag: AttributeBag) -> dict[str, Any]:
        return {"first": group[0][1](bag),
                "map": {f"k{i}": c(bag) for i, (_, c) in enumerate(group[1:])}, "absent": None}

    for case, _ in group:
        values = decode_attributes(case.get("attributes") or {})
        assert outcome(compile_map(spec), values) == outcome(by_hand, values), case["expr"]
