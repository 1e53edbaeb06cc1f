"""`mixerhub diff` on 100,000 recorded checks: exact counts against a hand-computed
expectation (issue #12, must-show 2)."""

from __future__ import annotations

import collections

import pytest
from diffkit import (BASE, CANDIDATE, CHECKS, FAILED_PRECONDITION, METHODS, NOT_FOUND, OK,
                     PATHS, PERMISSION_DENIED, RUNS, SERVICES, VERSIONS, base_code,
                     write_config, write_traffic)

from mixerhub.diff import parallel
from mixerhub.diff.command import DiffOptions, diff
from mixerhub.diff.report import DiffReport

# Per run of 200 checks (each path × method × version × service once), by hand:
# - /internal/b, ratings, v3–v5 (1×4×3×1 = 12): NOT_FOUND → PERMISSION_DENIED; no-admin
#   now decides, ratings-callers no longer does;
# - /internal/b, the other 28 (ratings v1–v2: 1×4×2; reviews: 1×4×5): OK → PERMISSION_DENIED;
# - /api/c, /api/d, /static/e, ratings, v3 (3×4×1×1 = 12): NOT_FOUND → OK;
# - the same paths, reviews, v5, DELETE (3×1×1×1 = 3): OK → FAILED_PRECONDITION.
PER_RUN = {("NOT_FOUND", "PERMISSION_DENIED"): 12, ("OK", "PERMISSION_DENIED"): 28,
           ("NOT_FOUND", "OK"): 12, ("OK", "FAILED_PRECONDITION"): 3}
EXPECTED_TRANSITIONS = {k: n * RUNS for k, n in PER_RUN.items()}
EXPECTED_CHANGED = 55 * RUNS  # 27,500
EXPECTED_RULES = {  # rule: (now decides, no longer decides, decides differently)
    "no-admin.istio-system": ((12 + 28) * RUNS, 0, 0),
    "ratings-callers.istio-system": (0, (12 + 12) * RUNS, 0),
    "no-deletes.istio-system": (3 * RUNS, 0, 0),
}


def candidate_code(path: str, method: str, version: str, service: str) -> int:
    """The candidate config's verdict, by hand (rules in config order)."""
    if path.startswith(("/admin", "/internal")):
        return PERMISSION_DENIED
    if service == "ratings" and version not in ("v1", "v2", "v3"):
        return NOT_FOUND
    if method == "DELETE" and version == "v5":
        return FAILED_PRECONDITION
    return OK


def test_the_hand_count_agrees_with_the_hand_written_policies() -> None:
    names = {OK: "OK", NOT_FOUND: "NOT_FOUND", PERMISSION_DENIED: "PERMISSION_DENIED",
             FAILED_PRECONDITION: "FAILED_PRECONDITION"}
    found: collections.Counter[tuple[str, str]] = collections.Counter()
    for combo in ((p, m, v, s) for p in PATHS for m in METHODS for v in VERSIONS
                  for s in SERVICES):
        before, after = base_code(*combo), candidate_code(*combo)
        if before != after:
            found[(names[before], names[after])] += 1
    assert dict(found) == PER_RUN


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    folder = tmp_path_factory.mktemp("diff")
    traffic = folder / "checks.jsonl"
    write_traffic(traffic)
    return (write_config(folder, "base.yaml", *BASE),
            write_config(folder, "candidate.yaml", *CANDIDATE), str(traffic))


@pytest.fixture(scope="module")
def report(setup: tuple[str, str, str]) -> DiffReport:
    base, candidate, traffic = setup
    return diff(DiffOptions((base,), (candidate,), (traffic,), top=100, examples=3, jobs=1))


def test_counts_by_transition_and_rule_are_exact(report: DiffReport) -> None:
    assert (report.checks, report.replayed, report.broken) == (CHECKS, CHECKS, 0)
    assert report.changed == EXPECTED_CHANGED
    transitions = {(t.to_json()["from"], t.to_json()["to"]): t.checks
                   for t in report.transitions}
    assert transitions == EXPECTED_TRANSITIONS
    rules = {r.rule: (r.now_decides, r.no_longer_decides, r.decides_differently)
             for r in report.rules}
    assert rules == EXPECTED_RULES
    # The traffic was recorded with the base verdicts: the base replay agrees with all.
    assert (report.recorded_agree, report.recorded_differ) == (CHECKS, [])


def test_two_worker_processes_report_the_same(setup: tuple[str, str, str],
                                              report: DiffReport) -> None:
    base, candidate, traffic = setup
    assert parallel.usable([traffic], 2)
    two = diff(DiffOptions((base,), (candidate,), (traffic,), top=100, examples=3, jobs=2))
    assert {**two.to_json(), "replay": None} == {**report.to_json(), "replay": None}


def test_patterns_name_the_referenced_values_most_frequent_first(report: DiffReport) -> None:
    assert sum(p.checks for p in report.patterns) == EXPECTED_CHANGED
    assert [p.checks for p in report.patterns] == sorted(
        (p.checks for p in report.patterns), reverse=True)
    # /internal/b from reviews: the base reads path and service, the candidate the path
    # only (its first rule denies): 4 methods × 5 versions × 500 runs share one pattern.
    top = report.patterns[0]
    assert top.attributes == {"destination.service.name": "reviews",
                              "request.path": "/internal/b"}
    assert (top.checks, top.change.label) == (20 * RUNS, "OK → PERMISSION_DENIED")
    # A DELETE from v5 to reviews: the candidate's new rule read the method and the label.
    deletes = [p for p in report.patterns if p.change.candidate_code == FAILED_PRECONDITION]
    assert [p.attributes for p in deletes] == [
        {"destination.service.name": "reviews", "request.method": "DELETE",
         "request.path": path, "source.labels[version]": "v5"}
        for path in sorted(["/api/c", "/api/d", "/static/e"])]
    assert all(p.checks == RUNS for p in deletes)


def test_examples_are_first_lines_of_the_top_patterns_redacted(
        setup: tuple[str, str, str], report: DiffReport) -> None:
    traffic = setup[2]
    assert len(report.examples) == 3
    first = report.examples[0]
    # The first /internal/b check to reviews is check 101 (path 1, service 1): line 102.
    assert first.where == f"{traffic}:102"
    assert first.attributes["request.path"] == "/internal/b"
    assert first.attributes["request.headers"]["authorization"] == "[REDACTED]"
    assert (first.base.code, first.candidate.code) == (OK, PERMISSION_DENIED)
    assert first.candidate.decider == "no-admin.istio-system"


def test_a_config_against_itself_changes_nothing(setup: tuple[str, str, str]) -> None:
    base, _, traffic = setup
    same = diff(DiffOptions((base,), (base,), (traffic,), jobs=1))
    assert (same.checks, same.changed, same.transitions, same.rules) == (CHECKS, 0, [], [])
