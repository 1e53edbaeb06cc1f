"""Run a CEXL case file (the conformance table's format) through ``compile_expression``.

A library for tests and for ``mixerhub eval --cases FILE``: it returns one CaseResult per
case and prints nothing. What is compared:

* value cases — static type, value and the referenced attributes (as a set, in the
  ``a`` / ``-a`` / ``m[k]`` / ``-m[k]`` notation);
* error cases — the kind of error (compile or evaluation), and that our message names the
  offending part that Mixer's message named (attribute, value, function or operator, and the
  types in a type mismatch) or, for syntax errors, points at the same column. Mixer's wording
  itself is not compared.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mixerhub.attributes.bag import AttributeBag
from mixerhub.attributes.types import TEXT_TYPES, Manifest, ValueType
from mixerhub.expr.compiled import CompiledExpression, compile_expression
from mixerhub.expr.errors import EvaluationError, ExpressionCompileError
from mixerhub.expr.values import format_rfc3339, ip_key, parse_go_duration, parse_ip, parse_rfc3339

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"

_GO_OPERATORS = {
    "EQ": "==", "NEQ": "!=", "LT": "<", "LEQ": "<=", "GT": ">", "GEQ": ">=",
    "ADD": "+", "Add": "+", "SUB": "-", "MUL": "*", "QUO": "/", "REM": "%",
    "AND": "&", "OR": "|", "XOR": "^", "LAND": "&&", "LOR": "||", "NOT": "!", "INDEX": "[]",
}  # fmt: skip


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case. ``expected``/``actual`` are short human-readable forms."""

    id: int
    name: str
    expr: str
    status: str
    reason: str = ""
    expected: str = ""
    actual: str = ""


@dataclass(frozen=True)
class CaseFile:
    manifests: dict[str, Manifest]
    cases: list[dict[str, Any]]


def load_case_file(path: str | Path) -> CaseFile:
    """Read a case file: ``manifests`` (name → attribute → type name) and ``cases``."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    manifests = {
        name: {attr: ValueType(type_name) for attr, type_name in (entries or {}).items()}
        for name, entries in data.get("manifests", {}).items()
    }
    return CaseFile(manifests, list(data.get("cases", [])))


def run_case_file(path: str | Path) -> list[CaseResult]:
    """Every case of the file, in order."""
    case_file = load_case_file(path)
    return [run_case(case, case_file.manifests) for case in case_file.cases]


def summarize(results: Iterable[CaseResult]) -> dict[str, int]:
    """Counts by status: {"passed": n, "failed": n, "skipped": n}."""
    counts = Counter(result.status for result in results)
    return {status: counts.get(status, 0) for status in (PASSED, FAILED, SKIPPED)}


def run_case(case: Mapping[str, Any], manifests: Mapping[str, Manifest]) -> CaseResult:
    """One case. Never raises: a crash of the compiler or the runner is a failed case."""
    try:
        return _run(case, manifests)
    except Exception as exc:
        return _result(case, FAILED, f"crashed: {type(exc).__name__}: {exc}")


def _result(case: Mapping[str, Any], status: str, reason: str = "", expected: str = "", actual: str = "") -> CaseResult:
    return CaseResult(
        int(case.get("id", -1)), str(case.get("name", "")), str(case.get("expr", "")),
        status, reason, expected, actual,
    )  # fmt: skip


def _run(case: Mapping[str, Any], manifests: Mapping[str, Manifest]) -> CaseResult:
    if "skip" in case:
        return _result(case, SKIPPED, f"{case['skip']}: {case.get('skip_reason', '')}".strip())
    manifest = manifests[case.get("manifest", "default")]
    if "want_compile_error" in case:
        return _expect_compile_error(case, manifest)
    try:
        compiled = compile_expression(case["expr"], manifest)
    except ExpressionCompileError as exc:
        return _result(case, FAILED, "unexpected compile error", _want_text(case), f"compile error: {exc}")
    bag = AttributeBag(decode_attributes(case.get("attributes") or {}))
    if "want_eval_error" in case:
        return _expect_eval_error(case, compiled, bag)
    return _expect_value(case, compiled, bag)


def _want_text(case: Mapping[str, Any]) -> str:
    if "want" in case:
        return f"{case['want']['type']} {case['want']['value']!r}"
    return f"evaluation error: {case.get('want_eval_error')}"


# --- value cases -------------------------------------------------------------------------


def _expect_value(case: Mapping[str, Any], compiled: CompiledExpression, bag: AttributeBag) -> CaseResult:
    want = case["want"]
    want_type = ValueType(want["type"])
    expected = f"{want_type.value} {want['value']!r}"
    if compiled.type is not want_type:
        return _result(case, FAILED, "wrong static type", expected, f"{compiled.type.value}")
    try:
        value = compiled(bag)
    except EvaluationError as exc:
        return _result(case, FAILED, "unexpected evaluation error", expected, f"evaluation error: {exc}")
    actual = f"{want_type.value} {show_value(value)}"
    if not same_value(want_type, want["value"], value):
        return _result(case, FAILED, "wrong value", expected, actual)
    return _check_references(case, bag, expected, actual)


def _check_references(case: Mapping[str, Any], bag: AttributeBag, expected: str, actual: str) -> CaseResult:
    if "referenced" not in case:
        return _result(case, PASSED, "", expected, actual)
    want = sorted(case["referenced"])
    got = sorted(ref.notation() for ref in bag.references(keyed=True))
    if want != got:
        return _result(case, FAILED, "wrong referenced attributes", f"referenced {want}", f"referenced {got}")
    return _result(case, PASSED, "", expected, actual)


def same_value(value_type: ValueType, want: Any, actual: Any) -> bool:
    """Whether an evaluation result equals the case's expected value (in the file's form)."""
    if value_type is ValueType.TIMESTAMP:
        return isinstance(actual, dt.datetime) and actual == parse_rfc3339(want)
    if value_type is ValueType.DURATION:
        return isinstance(actual, dt.timedelta) and actual == parse_go_duration(want)
    if value_type is ValueType.IP_ADDRESS:
        if isinstance(want, Mapping):  # raw bytes expected: the exact bytes, length included
            return bool(actual == base64.b64decode(want["bytes"]))
        return ip_key(actual) is not None and ip_key(actual) == ip_key(parse_ip(want))
    if value_type is ValueType.STRING_MAP:
        return isinstance(actual, Mapping) and dict(actual) == dict(want or {})
    return type(actual) is _PYTHON_TYPES[value_type] and bool(actual == want)


_PYTHON_TYPES: dict[ValueType, type] = {
    ValueType.BOOL: bool, ValueType.INT64: int, ValueType.DOUBLE: float, ValueType.BYTES: bytes,
    **{text_type: str for text_type in TEXT_TYPES},
}  # fmt: skip


def show_value(value: Any) -> str:
    """A short text for a result value, in the case file's notation where there is one."""
    if isinstance(value, dt.datetime):
        return format_rfc3339(value)
    if isinstance(value, bytes):
        return "{bytes: " + base64.b64encode(value).decode("ascii") + "}"
    return repr(value) if not isinstance(value, dt.timedelta) else str(value)


# --- error cases -------------------------------------------------------------------------


def _expect_compile_error(case: Mapping[str, Any], manifest: Manifest) -> CaseResult:
    go_message = case["want_compile_error"]
    expected = f"compile error like: {go_message}"
    try:
        compiled = compile_expression(case["expr"], manifest)
    except ExpressionCompileError as exc:
        return _check_compile_message(case, exc, expected)
    return _result(case, FAILED, "compiled, but an error was expected", expected, f"compiled: {compiled.type.value}")


def _check_compile_message(case: Mapping[str, Any], exc: ExpressionCompileError, expected: str) -> CaseResult:
    parts, column = compile_error_parts(case["want_compile_error"])
    actual = f"compile error at {exc.position}: {exc.message}"
    missing = [part for part in parts if not names_part(exc.message, part)]
    if missing:
        return _result(case, FAILED, f"message does not name {missing}", expected, actual)
    if column is not None and exc.position != column:
        return _result(case, FAILED, f"error should point at column {column}", expected, actual)
    return _result(case, PASSED, "", expected, actual)


def _expect_eval_error(case: Mapping[str, Any], compiled: CompiledExpression, bag: AttributeBag) -> CaseResult:
    go_message = case["want_eval_error"]
    expected = f"evaluation error like: {go_message}"
    want_type = case.get("want_type")
    if want_type is not None and compiled.type is not ValueType(want_type):
        return _result(case, FAILED, "wrong static type", f"{want_type}", compiled.type.value)
    try:
        value = compiled(bag)
    except EvaluationError as exc:
        actual = f"evaluation error: {exc.message}"
        missing = [part for part in eval_error_parts(go_message) if not names_part(exc.message, part)]
        if missing:
            return _result(case, FAILED, f"message does not name {missing}", expected, actual)
        return _check_references(case, bag, expected, actual)
    return _result(case, FAILED, "evaluated, but an error was expected", expected, show_value(value))


def names_part(message: str, part: str) -> bool:
    """Quoted parts must appear as they are; names and type names as whole words."""
    if part.startswith("'"):
        return part in message
    return re.search(rf"(?<![\w.]){re.escape(part)}(?![\w])", message) is not None


def compile_error_parts(go_message: str) -> tuple[list[str], int | None]:
    """What a compile error must name, and the 0-based column it must point at (syntax
    errors), derived from Mixer's message for the same case."""
    found = re.match(r"unable to parse expression '.*': 1:(\d+): ", go_message, re.S)
    if found:
        return [], int(found.group(1)) - 1
    patterns = (
        (r"unknown attribute (\S+)$", lambda m: [m.group(1)]),
        (r"unknown function: (\w+)", lambda m: [_symbol(m.group(1))]),
        (r"invoking (?:instance method without an instance|regular function on instance method): (\w+)",
         lambda m: [m.group(1)]),
        (r"internal compiler error -- (\w+) for type not yet implemented: (\w+)",
         lambda m: [_symbol(m.group(1)), m.group(2).upper()]),
        (r".*?(\w+)\(.*\) arg \d+ \(.*\) typeError got (\w+), expected (\w+)",
         lambda m: [_symbol(m.group(1)), m.group(2), m.group(3)]),
        (r".*?(\w+)\(.*\) target typeError got (\w+), expected (\w+)",
         lambda m: [_symbol(m.group(1)), m.group(2), m.group(3)]),
        (r".*?(\w+)\(.*\) arity mismatch", lambda m: [_symbol(m.group(1))]),
    )  # fmt: skip
    for pattern, parts in patterns:
        match = re.match(pattern, go_message, re.S)
        if match:
            return parts(match), None
    return [], None


def _symbol(go_name: str) -> str:
    operator = _GO_OPERATORS.get(go_name)
    return f"'{operator}'" if operator else go_name


def eval_error_parts(go_message: str) -> list[str]:
    """What an evaluation error must name (quoted), derived from Mixer's message."""
    if go_message.startswith("error converting string to uri: empty string"):
        return ["uri", "''"]
    for pattern in (
        r"lookup failed: '(.*)'",
        r"could not convert '?([^' ]*)'? to",
        r"error converting '(.*?)' to",
        r"error converting string to uri '(.*?)'",
        r"error converting value to string: '(.*)'",
    ):
        match = re.match(pattern, go_message)
        if match:
            return [f"'{match.group(1)}'"]
    return []


# --- attributes in the case file's notation ----------------------------------------------


def decode_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: {wrapper: payload}}`` → bag values (see the file's ``format``)."""
    return {name: decode_value(wrapped) for name, wrapped in attributes.items()}


def decode_value(wrapped: Mapping[str, Any]) -> Any:
    ((wrapper, payload),) = wrapped.items()
    decoder = _DECODERS.get(wrapper)
    if decoder is None:
        raise ValueError(f"unknown attribute wrapper {wrapper!r}")
    return decoder(payload)


def _strict(parse: Any, what: str) -> Any:
    """A case-file decoder from a parser that returns None on bad text."""
    def decode(text: str) -> Any:
        value = parse(text)
        if value is None:
            raise ValueError(f"bad {what} {text!r}")
        return value
    return decode


_duration = _strict(parse_go_duration, "duration")
_timestamp = _strict(parse_rfc3339, "timestamp")
_ip = _strict(parse_ip, "IP address")


_DECODERS: dict[str, Any] = {
    "string": str, "dns_name": str, "email": str, "uri": str,
    "int64": int, "double": float, "bool": bool,
    "timestamp": _timestamp, "duration": _duration, "ip_address": _ip,
    "bytes": base64.b64decode,
    "string_map": lambda payload: {str(k): str(v) for k, v in (payload or {}).items()},
}  # fmt: skip
