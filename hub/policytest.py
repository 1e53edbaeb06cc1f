"""``mixerhub test``: policy unit tests (``*_test.yaml``), run in process against one engine
per file (docs/testing-policies.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from mixerhub.attributes.bag import AttributeBag
from mixerhub.config.files import ConfigError, LineDict, read_documents
from mixerhub.config.loader import LoadedConfig, load_config
from mixerhub.config.snapshot import start_snapshot, stop_adapters
from mixerhub.dispatch import PolicyEngine
from mixerhub.errors import AttributeJSONError
from mixerhub.jsonform import parse_duration, values_from_json
from mixerhub.logs import get_logger
from mixerhub.metrics import Metrics
from mixerhub.plugins import Plugins
from mixerhub.verdict import CheckOutcome, QuotaRequest

CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
         "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
         "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
         "UNAUTHENTICATED")
CASE_KEYS = frozenset({"name", "attributes", "quotas", "dedup_id", "want"})
WANT_KEYS = frozenset({"code", "message", "valid_duration", "valid_use_count", "referenced",
                       "request_header_ops", "response_header_ops", "quotas"})
QUOTA_WANT_KEYS = frozenset({"granted", "code"})
DURATION_TOLERANCE = 0.5  # seconds: adapters may count down a window


class CaseError(Exception):
    """A case (or file) that cannot run; the message starts with ``FILE:LINE:``."""


@dataclasses.dataclass
class CaseResult:
    where: str  # FILE:LINE
    name: str
    status: str  # "passed", "failed" or "error"
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FileResult:
    path: Path
    cases: list[CaseResult]


# ---- finding and reading test files -----------------------------------------------------

def find_test_files(paths: Iterable[str]) -> list[Path]:
    """A given file as is; a folder adds its ``*_test.yaml`` files, recursively, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*_test.yaml") if p.is_file()))
        elif path.is_file():
            found.append(path)
    return found


def read_spec(path: Path) -> Any:
    docs = read_documents(path)
    spec = docs[0].body if docs else None
    if not isinstance(spec, dict) or not isinstance(spec.get("cases"), list):
        raise CaseError(f"{path}:1: a test file is a mapping with 'config' and a list 'cases'")
    spec = cast(LineDict, spec)  # every mapping read_documents returns is a LineDict
    config = spec.get("config")
    config = [config] if isinstance(config, str) else config
    if not config or not isinstance(config, list):
        raise CaseError(f"{path}:{spec.line}: 'config' (a path or list of paths) is required")
    unknown = sorted(set(spec) - {"config", "cases"})
    if unknown:
        raise CaseError(f"{path}:{spec.line_of(unknown[0])}: unknown key {unknown[0]!r}")
    return spec, [str(path.parent / str(p)) for p in config]


# ---- running -----------------------------------------------------------------------------

def run_file(path: Path, plugins: Plugins, namespace: str) -> FileResult:
    where = f"{path}:1"
    try:
        spec, config_paths = read_spec(path)
        where = f"{path}:{spec.line_of('config')}"
        config = load_config(config_paths, plugins, namespace)
    except (CaseError, ConfigError) as exc:
        return FileResult(path, [CaseResult(where, "(file)", "error", _lines(exc, where))])
    return FileResult(path, asyncio.run(_run_cases(path, where, spec["cases"], config)))


def _lines(exc: Exception, where: str) -> list[str]:
    text = str(exc)
    if isinstance(exc, ConfigError):
        text = f"{where}: config error:\n" + text
    return text.splitlines()


async def _run_cases(path: Path, where: str, cases: list[Any], config: LoadedConfig
                     ) -> list[CaseResult]:
    metrics = Metrics()
    try:
        snapshot = await start_snapshot(config, metrics)
    except ConfigError as exc:
        return [CaseResult(where, "(file)", "error", _lines(exc, where))]
    engine = PolicyEngine(snapshot, metrics, get_logger("mixerhub.policytest"))
    try:
        return [await _run_case(engine, path, i, case, config) for i, case in enumerate(cases)]
    finally:
        await stop_adapters(snapshot.adapters)


async def _run_case(engine: PolicyEngine, path: Path, index: int, case: Any,
                    config: LoadedConfig) -> CaseResult:
    line = getattr(case, "line", 1)
    name = str(case.get("name", f"#{index + 1}")) if isinstance(case, dict) else f"#{index + 1}"
    where = f"{path}:{line}"
    try:
        values, quotas, want = _prepare(path, case, config)
        outcome = await engine.check(AttributeBag(values), quotas, str(case.get("dedup_id", "")))
        problems = compare(outcome, want)
    except (CaseError, TypeError, AttributeError, ValueError) as exc:
        text = str(exc) if isinstance(exc, CaseError) else f"bad 'want': {exc}"
        return CaseResult(where, name, "error",
                          [text if text.startswith(f"{path}:") else f"{where}: {text}"])
    return CaseResult(where, name, "failed" if problems else "passed", problems)


def _prepare(path: Path, case: Any, config: LoadedConfig
             ) -> tuple[dict[str, Any], dict[str, QuotaRequest], dict[str, Any]]:
    if not isinstance(case, dict):
        raise CaseError(f"{path}:{getattr(case, 'line', 1)}: a case must be a mapping")
    case = cast(LineDict, case)  # a mapping of the test file: a LineDict
    _check_keys(path, case, CASE_KEYS, "case key")
    attributes = case.get("attributes") or {}
    unknown = sorted(str(n) for n in attributes if n not in config.manifest) \
        if isinstance(attributes, dict) else []
    if unknown:
        raise CaseError(f"{path}:{case.line}: unknown attribute {unknown[0]!r} "
                        "(not in the attribute manifest)")
    try:
        values = values_from_json(attributes, config.manifest)
    except AttributeJSONError as exc:
        raise CaseError(f"{path}:{case.line_of('attributes')}: {exc}") from None
    want = case.get("want") or {}
    if not isinstance(want, dict):
        raise CaseError(f"{path}:{case.line_of('want')}: 'want' must be a mapping")
    _check_keys(path, want, WANT_KEYS, "want key")
    for spec in (want.get("quotas") or {}).values():
        if isinstance(spec, dict):
            _check_keys(path, spec, QUOTA_WANT_KEYS, "quota want key")
    return values, _quota_requests(path, case), want


def _check_keys(path: Path, mapping: Any, allowed: frozenset[str], what: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise CaseError(f"{path}:{mapping.line_of(key)}: unknown {what} {key!r} "
                            f"(known: {', '.join(sorted(allowed))})")


def _quota_requests(path: Path, case: Any) -> dict[str, QuotaRequest]:
    try:
        return {str(n): QuotaRequest(int(q.get("amount", 1)), bool(q.get("best_effort", False)))
                for n, q in (case.get("quotas") or {}).items()}
    except (AttributeError, TypeError, ValueError):
        raise CaseError(f"{path}:{case.line_of('quotas')}: quotas: "
                        "{NAME: {amount: N, best_effort: BOOL}}") from None


# ---- comparing ---------------------------------------------------------------------------

def code_number(value: Any) -> int:
    if isinstance(value, str) and value.upper() in CODES:
        return CODES.index(value.upper())
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CaseError(f"unknown code {value!r}") from None


def code_text(number: int) -> str:
    return f"{CODES[number]} ({number})" if 0 <= number < len(CODES) else str(number)


def _diff(field: str, expected: Any, actual: Any) -> str:
    return f"{field}:\n    expected: {expected}\n    actual:   {actual}"


def compare(outcome: CheckOutcome, want: dict[str, Any]) -> list[str]:
    """One readable expected/actual block per differing field."""
    v, problems = outcome.verdict, []
    if "code" in want and v.code != code_number(want["code"]):
        problems.append(_diff("code", code_text(code_number(want["code"])),
                              f"{code_text(v.code)} {v.message!r}"))
    if "message" in want and str(want["message"]) not in v.message:
        problems.append(_diff("message", f"contains {str(want['message'])!r}", repr(v.message)))
    if "valid_duration" in want:
        expected = parse_duration(str(want["valid_duration"]))
        if expected is None:
            raise CaseError(f"valid_duration {want['valid_duration']!r} is not a duration")
        if abs((v.valid_duration - expected).total_seconds()) > DURATION_TOLERANCE:
            problems.append(_diff("valid_duration", want["valid_duration"], v.valid_duration))
    if "valid_use_count" in want and v.valid_use_count != want["valid_use_count"]:
        problems.append(_diff("valid_use_count", want["valid_use_count"], v.valid_use_count))
    if "referenced" in want:
        got = sorted({r.notation() for r in v.references})
        if got != sorted(set(want["referenced"])):
            problems.append(_diff("referenced", sorted(set(want["referenced"])), got))
    for field in ("request_header_ops", "response_header_ops"):
        if field in want:
            got_ops = [{"name": o.name, "value": o.value, "operation": o.operation.name}
                       for o in getattr(v, field)]
            want_ops = [{"value": "", "operation": "REPLACE", **o} for o in want[field]]
            if got_ops != want_ops:
                problems.append(_diff(field, want_ops, got_ops))
    return problems + _compare_quotas(outcome, want.get("quotas") or {})


def _compare_quotas(outcome: CheckOutcome, want: dict[str, Any]) -> list[str]:
    problems = []
    for name, q in want.items():
        grant = outcome.quotas.get(name)
        if grant is None:
            problems.append(_diff(f"quota {name}", "a result", "none (was it requested?)"))
            continue
        if "granted" in q and grant.granted_amount != q["granted"]:
            problems.append(_diff(f"quota {name} granted", q["granted"], grant.granted_amount))
        if "code" in q and grant.code != code_number(q["code"]):
            problems.append(_diff(f"quota {name} code", code_text(code_number(q["code"])),
                                  code_text(grant.code)))
    return problems


# ---- output ------------------------------------------------------------------------------

def summary(results: Sequence[FileResult]) -> tuple[str, int, int, int]:
    cases = [c for r in results for c in r.cases]
    counts = [sum(c.status == s for c in cases) for s in ("passed", "failed", "error")]
    line = f"{counts[0]} passed, {counts[1]} failed"
    if counts[2]:
        line += f", {counts[2]} error{'s' if counts[2] != 1 else ''}"
    return line, counts[0], counts[1], counts[2]


def progress(result: FileResult) -> str:
    marks = {"passed": ".", "failed": "F", "error": "E"}
    return f"{result.path} " + "".join(marks[c.status] for c in result.cases)


def failure_blocks(results: Sequence[FileResult]) -> list[str]:
    blocks = []
    for case in (c for r in results for c in r.cases if c.status != "passed"):
        label = "ERROR" if case.status == "error" else "FAILED"
        body = "\n".join("  " + line for p in case.problems for line in p.splitlines())
        blocks.append(f"{case.where}: case {case.name!r} {label}\n{body}")
    return blocks


def write_junit(results: Sequence[FileResult], target: str) -> None:
    suites = ET.Element("testsuites")
    for result in results:
        suite = ET.SubElement(suites, "testsuite", name=str(result.path),
                              tests=str(len(result.cases)),
                              failures=str(sum(c.status == "failed" for c in result.cases)),
                              errors=str(sum(c.status == "error" for c in result.cases)))
        for case in result.cases:
            element = ET.SubElement(suite, "testcase", name=case.name,
                                    classname=str(result.path), file=case.where)
            if case.status != "passed":
                tag = "failure" if case.status == "failed" else "error"
                heads = [p.splitlines()[0].rstrip(":") for p in case.problems if p]
                message = ("differs: " + ", ".join(heads)) if tag == "failure" else heads[0]
                child = ET.SubElement(element, tag, message=message)
                child.text = "\n".join(case.problems)
    ET.ElementTree(suites).write(target, encoding="utf-8", xml_declaration=True)
