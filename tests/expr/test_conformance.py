"""Mixer's own expression test table (tests/data/cexl_conformance.yaml), one pytest case each."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixerhub.expr.cases import FAILED, SKIPPED, load_case_file, run_case, summarize

TABLE = Path(__file__).resolve().parent.parent / "data" / "cexl_conformance.yaml"
CASE_FILE = load_case_file(TABLE)


@pytest.mark.parametrize("case", CASE_FILE.cases, ids=[f"{c['id']}-{c['name']}" for c in CASE_FILE.cases])
def test_case(case: dict) -> None:
    result = run_case(case, CASE_FILE.manifests)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.status != FAILED, f"{result.reason}\n  expected: {result.expected}\n  actual:   {result.actual}"


def test_table_is_complete() -> None:
    assert len(CASE_FILE.cases) == 423
    assert [c["id"] for c in CASE_FILE.cases] == list(range(423))


def test_summary_counts_every_case() -> None:
    results = [run_case(case, CASE_FILE.manifests) for case in CASE_FILE.cases]
    assert summarize(results) == {"passed": 421, "failed": 0, "skipped": 2}
