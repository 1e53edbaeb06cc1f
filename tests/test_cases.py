"""Policy semantics as data: every ``tests/cases/**/*.yaml`` runs through a real hub over
the Mixer v1 API (docs/testing.md describes the format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mixerhub.app import Hub, Settings
from mixerhub.attributes.types import default_manifest
from mixerhub.jsonform import values_from_json
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest
from tests.conftest import scrape

CASES = Path(__file__).parent / "cases"
FILES = sorted(CASES.rglob("*.yaml"))
CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
         "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
         "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
         "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16}


def code(value: Any) -> int:
    return CODES[value] if isinstance(value, str) else int(value)


def seconds(text: Any) -> float:
    text = str(text)
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.rstrip("s"))


def compare_check(result: Any, want: dict[str, Any]) -> list[str]:
    v, problems = result.verdict, []
    if "code" in want and v.code != code(want["code"]):
        problems.append(f"code {v.code} ({v.message!r}), want {want['code']}")
    if "message" in want and want["message"] not in v.message:
        problems.append(f"message {v.message!r} lacks {want['message']!r}")
    if "valid_duration" in want and abs(v.valid_duration.total_seconds()
                                        - seconds(want["valid_duration"])) > 0.5:
        problems.append(f"valid_duration {v.valid_duration}, want {want['valid_duration']}")
    if "valid_use_count" in want and v.valid_use_count != want["valid_use_count"]:
        problems.append(f"valid_use_count {v.valid_use_count}, want {want['valid_use_count']}")
    if "referenced" in want:
        got = sorted(r.notation() for r in v.references)
        if got != sorted(want["referenced"]):
            problems.append(f"referenced {got}, want {sorted(want['referenced'])}")
    for field in ("request_header_ops", "response_header_ops"):
        if field in want:
            got_ops = [{"name": o.name, "value": o.value, "operation": o.operation.name}
                       for o in getattr(v, field)]
            want_ops = [{"operation": "REPLACE", **o} for o in want[field]]
            if got_ops != want_ops:
                problems.append(f"{field} {got_ops}, want {want_ops}")
    for name, q in (want.get("quotas") or {}).items():
        grant = result.quotas.get(name)
        if grant is None:
            problems.append(f"no quota result for {name}")
            continue
        if "granted" in q and grant.granted_amount != q["granted"]:
            problems.append(f"quota {name} granted {grant.granted_amount}, want {q['granted']}")
        if "code" in q and grant.code != code(q["code"]):
            problems.append(f"quota {name} code {grant.code}, want {q['code']}")
    return problems


async def run_case(client: MixerClient, hub: Hub, case: dict[str, Any], tmp: Path) -> list[str]:
    manifest = default_manifest()
    if "report" in case:
        bags = [values_from_json(b, manifest) for b in case["report"]]
        await client.report(bags)
        return await check_outputs(hub, case, tmp)
    attrs = values_from_json(case.get("attributes") or {}, manifest)
    quotas = {n: QuotaRequest(q.get("amount", 1), q.get("best_effort", False))
              for n, q in (case.get("quotas") or {}).items()}
    result = await client.check(attrs, quotas, case.get("dedup_id", ""))
    return compare_check(result, case.get("want") or {}) + await check_outputs(hub, case, tmp)


async def check_outputs(hub: Hub, case: dict[str, Any], tmp: Path) -> list[str]:
    problems = []
    if "want_metrics" in case:
        samples = await scrape(hub.http.port)
        for name, value in case["want_metrics"].items():
            if samples.get(name) != value:
                problems.append(f"metric {name} = {samples.get(name)}, want {value}")
    for name, want in (case.get("want_files") or {}).items():
        lines = (tmp / name).read_text().splitlines() if (tmp / name).exists() else []
        if "lines" in want and len(lines) != want["lines"]:
            problems.append(f"{name}: {len(lines)} lines, want {want['lines']}")
        for text in want.get("contains", []):
            if not any(text in line for line in lines):
                problems.append(f"{name}: no line contains {text!r}")
        for text in want.get("absent", []):
            if any(text in line for line in lines):
                problems.append(f"{name}: a line contains {text!r}")
    return problems


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CASES)) for p in FILES])
async def test_case_file(path: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    config = tmp_path / "config.yaml"
    config.write_text(spec["config"].replace("${TMP}", str(tmp_path)))
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(config),),
                       watch=False, cache_size=spec.get("cache_size", 0)))
    await hub.start()
    client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
    failures = []
    try:
        for i, case in enumerate(spec["cases"]):
            for problem in await run_case(client, hub, case, tmp_path):
                failures.append(f"case {i} {case.get('name', '')!r}: {problem}")
    finally:
        await client.close()
        await hub.stop()
    assert not failures, "\n".join(failures)


def test_there_are_cases() -> None:
    assert len(FILES) >= 10
