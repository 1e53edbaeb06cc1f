"""Evaluations per second of the Rust CEL (PyPI ``common-expression-language``).

Run by bench/compare.py with the interpreter of the venv that bench/peers/provision_cel_rust.sh
makes (the package imports as ``cel``, which clashes with xds-protos in the project's venv),
so nothing from mixerhub is imported here.

    python _cel_rust.py '{"expression": "...", "bag": {...}, "seconds": 0.15, "rounds": 3}'

Prints JSON: seconds per call with a prebuilt ``Context`` (the bag converted once, like
CEXL's prepared bag) and with the plain dict converted on every call, and the result.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import cel  # type: ignore[import-not-found]


def best_seconds(call: Callable[[], Any], seconds: float, rounds: int) -> float:
    calls = 1000
    while True:  # calibrate: about a tenth of ``seconds``
        start = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            call()
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 10:
            calls = max(1000, int(calls * seconds / elapsed))
            break
        calls *= 10
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in itertools.repeat(None, calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    job = json.loads(sys.argv[1])
    program = cel.compile(job["expression"])
    bag = job["bag"]
    context = cel.Context(variables=bag)
    seconds, rounds = job["seconds"], job["rounds"]
    print(json.dumps({
        "result": program.execute(context),
        "prepared": best_seconds(lambda: program.execute(context), seconds, rounds),
        "dict": best_seconds(lambda: program.execute(bag), seconds, rounds),
    }))


if __name__ == "__main__":
    main()
