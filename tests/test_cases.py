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
from mixerhub.policytest import compare  # the same comparison `mixerhub test` makes
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest
from tests.conftest import scrape

CASES = Path(__file__).parent / "cases"
FILES = sorted(CASES.rglob("*.yaml"))
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
    return compare(result, case.get("want") or {}) + await check_outputs(hub, case, tmp)


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
async def test_case_file(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    spec = yaml.safe_load(path.read_text())
    config = tmp_path / "config.yaml"
    text = spec["config"].replace("${TMP}", str(tmp_path))
    if "${REDIS_URL}" in text:  # the test session's real Redis, emptied for this file
        text = text.replace("${REDIS_URL}", request.getfixturevalue("redis_url"))
    config.write_text(text)
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
