"""The case-file runner (``mixerhub.expr.cases``): statuses and what it compares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mixerhub.attributes.types import ValueType
from mixerhub.expr.cases import (
    FAILED,
    PASSED,
    SKIPPED,
    compile_error_parts,
    eval_error_parts,
    run_case,
    run_case_file,
    summarize,
)

MANIFESTS = {"default": {"as": ValueType.STRING, "ai": ValueType.INT64, "ar": ValueType.STRING_MAP}}


def case(**fields: Any) -> dict[str, Any]:
    return {"id": 7, "name": fields.get("expr", ""), "manifest": "default", "attributes": {}, **fields}


def test_a_value_case_passes_when_type_value_and_references_agree() -> None:
    result = run_case(
        case(expr='ar["k"] | as', attributes={"ar": {"string_map": {}}, "as": {"string": "v"}},
             want={"type": "STRING", "value": "v"}, referenced=["ar", "-ar[k]", "as"]),
        MANIFESTS,
    )  # fmt: skip
    assert result.status == PASSED, result


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"expr": "ai", "want": {"type": "STRING", "value": "1"}}, "wrong static type"),
        ({"expr": "ai | 2", "want": {"type": "INT64", "value": 3}}, "wrong value"),
        ({"expr": "ai | 2", "want": {"type": "INT64", "value": 2}, "referenced": []}, "wrong referenced attributes"),
        ({"expr": "ai", "want": {"type": "INT64", "value": 2}}, "unexpected evaluation error"),
        ({"expr": "nope", "want": {"type": "INT64", "value": 2}}, "unexpected compile error"),
        ({"expr": "ai | 1", "want_compile_error": "boom"}, "compiled, but an error was expected"),
        ({"expr": "ai | 1", "want_eval_error": "boom", "want_type": "INT64"}, "evaluated, but an error was expected"),
    ],
)
def test_failures_say_why(fields: dict[str, Any], reason: str) -> None:
    result = run_case(case(**fields), MANIFESTS)
    assert (result.status, result.reason) == (FAILED, reason)
    assert result.expected and result.actual


def test_an_error_message_must_name_the_offending_part() -> None:
    named = run_case(
        case(expr="ai == as", want_compile_error="EQ($ai, $as) arg 2 ($as) typeError got STRING, expected INT64"),
        MANIFESTS,
    )
    assert named.status == PASSED
    unnamed = run_case(
        case(expr="ai == as", want_compile_error="EQ($ai, $as) arg 2 ($as) typeError got STRING, expected BOOL"),
        MANIFESTS,
    )
    assert unnamed.status == FAILED and "BOOL" in unnamed.reason


def test_a_syntax_error_must_point_at_the_same_column() -> None:
    good = run_case(
        case(expr="ai = 2", want_compile_error="unable to parse expression 'ai = 2': 1:4: expected '=='"), MANIFESTS
    )
    assert good.status == PASSED
    bad = run_case(case(expr="ai = 2", want_compile_error="unable to parse expression 'ai = 2': 1:1: x"), MANIFESTS)
    assert bad.status == FAILED and "column 0" in bad.reason


def test_skipped_and_crashing_cases() -> None:
    assert run_case(case(expr="x", skip="custom-function", skip_reason="why"), MANIFESTS).status == SKIPPED
    crashed = run_case(case(expr="ai", manifest="missing"), MANIFESTS)
    assert crashed.status == FAILED and crashed.reason.startswith("crashed: KeyError")


def test_offending_parts_from_mixer_messages() -> None:
    assert compile_error_parts("unknown function: QUO") == (["'/'"], None)
    assert compile_error_parts('"aaa":matches(23) arg 1 (23) typeError got INT64, expected STRING') == (
        ["matches", "INT64", "STRING"],
        None,
    )
    assert compile_error_parts("internal compiler error -- Add for type not yet implemented: bool") == (
        ["'+'", "BOOL"],
        None,
    )
    assert compile_error_parts("something new") == ([], None)
    assert eval_error_parts("lookup failed: 'a.b'") == ["'a.b'"]
    assert eval_error_parts("could not convert 10.1.12 to IP_ADDRESS") == ["'10.1.12'"]
    assert eval_error_parts("error converting '' to e-mail: 'mail: no address'") == ["''"]


def test_run_case_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(
        "manifests:\n  default: {ai: INT64}\n"
        "cases:\n"
        "- {id: 0, name: a, expr: 'ai | 1', manifest: default, attributes: {}, want: {type: INT64, value: 1}}\n"
        "- {id: 1, name: b, expr: 'ai', manifest: default, attributes: {ai: {int64: 3}},\n"
        "   want: {type: INT64, value: 4}}\n",
        encoding="utf-8",
    )
    results = run_case_file(path)
    assert [r.status for r in results] == [PASSED, FAILED]
    assert summarize(results) == {"passed": 1, "failed": 1, "skipped": 0}
