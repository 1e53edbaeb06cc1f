"""Evaluations per second of compiled CEXL expressions, next to hand-written Python.

    .venv/bin/python bench/expr_evals.py [--seconds 0.15] [--rounds 3]

Each figure covers one compiled expression called on a prepared AttributeBag with
reference tracking on (every call writes its look-ups into ``bag.refs``). The baseline is a
hand-written function doing the same dictionary look-ups without tracking, timed in the same
run, so the ratio is what the language and the tracking cost over plain Python.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import os
import platform
import re
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from mixerhub.attributes.bag import AttributeBag
from mixerhub.expr import compile_expression

_API = re.compile(r"^/api/v[0-9]+/")
_BLOCKED = ipaddress.ip_address("10.0.0.1")


class Case(NamedTuple):
    label: str
    text: str
    baseline: Callable[[AttributeBag], Any]


def _header_and_prefix(bag: AttributeBag) -> Any:
    values = bag.values
    return values["request.headers"].get("x-user", "") == "alice" and values["destination.service.host"].startswith(
        "reviews"
    )


def _first_present(bag: AttributeBag) -> Any:
    values = bag.values
    for name in ("source.principal", "request.auth.principal"):
        found = values.get(name)
        if found is not None:
            return found
    return "anonymous"


def _regex(bag: AttributeBag) -> Any:
    return _API.search(bag.values["request.path"]) is not None


def _ip(bag: AttributeBag) -> Any:
    return bag.values["source.ip"] == _BLOCKED


def _glob_or_default(bag: AttributeBag) -> Any:
    return bag.values["request.headers"].get("user-agent", "").startswith("curl")


_TARGET = 'request.headers["x-user"] == "alice" && destination.service.host.startsWith("reviews")'
CASES = [
    Case("map key && startsWith", _TARGET, _header_and_prefix),
    Case("| chain, two absent", 'source.principal | request.auth.principal | "anonymous"', _first_present),
    Case("regex matches", '"^/api/v[0-9]+/".matches(request.path)', _regex),
    Case("ip comparison", 'source.ip == ip("10.0.0.1")', _ip),
    Case("match() on map key | \"\"", 'match(request.headers["user-agent"] | "", "curl*")', _glob_or_default),
]  # fmt: skip


def prepared_bag() -> AttributeBag:
    return AttributeBag(
        {
            "request.headers": {"x-user": "alice", "user-agent": "curl/8.5", "accept": "*/*", ":path": "/api/v1/x"},
            "destination.service.host": "reviews.default.svc.cluster.local",
            "request.path": "/api/v1/products/7",
            "source.ip": ipaddress.ip_address("10.0.0.1"),
        }
    )


def best_seconds_per_call(
    function: Callable[[AttributeBag], Any], bag: AttributeBag, seconds: float, rounds: int
) -> float:
    """The fastest of ``rounds`` timed loops, each about ``seconds`` long."""
    calls = _calibrate(function, bag, seconds)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            function(bag)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def _calibrate(function: Callable[[AttributeBag], Any], bag: AttributeBag, seconds: float) -> int:
    calls = 1000
    while True:
        start = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            function(bag)
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 10:
            return max(1000, int(calls * seconds / elapsed))
        calls *= 10


def measure(case: Case, seconds: float, rounds: int) -> tuple[float, float]:
    """(compiled, baseline) seconds per call; checks both give the same answer first."""
    compiled = compile_expression(case.text)
    bag = prepared_bag()
    if compiled(bag) != case.baseline(bag):
        raise AssertionError(f"{case.label}: compiled and baseline disagree")
    return (
        best_seconds_per_call(compiled, bag, seconds, rounds),
        best_seconds_per_call(case.baseline, bag, seconds, rounds),
    )


def report_lines(results: list[tuple[Case, float, float]], seconds: float, rounds: int) -> list[str]:
    lines = [
        "CEXL evaluation speed: one compiled expression on a prepared bag with reference tracking on",
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; best of {rounds} loops of ~{seconds:g} s each;"
        " baseline = hand-written Python doing the same look-ups without tracking, same run",
        "",
        f"{'expression':<28} {'compiled evals/s':>17} {'µs/eval':>8}"
        f" {'baseline evals/s':>17} {'µs/eval':>8} {'ratio':>6}",
    ]
    for case, compiled, baseline in results:
        lines.append(
            f"{case.label:<28} {1 / compiled:>17,.0f} {compiled * 1e6:>8.3f}"
            f" {1 / baseline:>17,.0f} {baseline * 1e6:>8.3f} {compiled / baseline:>5.2f}x"
        )
    lines.append("")
    lines += [f"  {case.label}: {case.text}" for case, _, _ in results]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=0.15, help="length of one timed loop")
    parser.add_argument("--rounds", type=int, default=3, help="timed loops per measurement; the best counts")
    args = parser.parse_args(argv)
    results = [(case, *measure(case, args.seconds, args.rounds)) for case in CASES]
    print("\n".join(report_lines(results, args.seconds, args.rounds)))


if __name__ == "__main__":
    main()
