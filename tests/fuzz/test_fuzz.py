"""The CI run of the decoding fuzzer (tests/fuzz/fuzz_decode.py): a few thousand payloads
through the real handlers, coverage-guided (atheris) and random. The long run —
1,000,000 payloads with the memory bound — is a documented command
(docs/operations.md, "Fuzzing"), not part of CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_decode.py")


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, str(HARNESS), *args], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def test_coverage_guided_run_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    stdout = run("-runs=3000", "-seed=1", "-max_len=2048", str(tmp_path))
    assert "done: 3,000 payloads, no crash, no unhandled exception" in stdout
    assert any(tmp_path.iterdir())  # the corpus was seeded and grew


def test_random_run_finds_no_crash_and_answers_every_entry_point() -> None:
    stdout = run("--random", "3000")
    done = re.search(r"done: 3,000 payloads, no crash, no unhandled exception, peak rss "
                     r"growth after warm-up \+?(-?[\d.]+)%; answered \(not refused\) by entry "
                     r"point: (.*)", stdout)
    assert done, stdout
    answered = dict(item.rsplit(" ", 1) for item in done.group(2).split(", "))
    assert all(int(n.replace(",", "")) > 0 for n in answered.values()), answered
