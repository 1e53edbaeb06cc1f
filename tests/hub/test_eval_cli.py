"""`mixerhub eval`: one expression, and the conformance table through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mixerhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mixerhub", "eval", *args],
                          capture_output=True, text=True, timeout=120)


def test_conformance_table_passes_every_runnable_case() -> None:
    out = mixerhub("--cases", str(ROOT / "tests" / "data" / "cexl_conformance.yaml"))
    assert out.returncode == 0, out.stdout
    assert out.stdout.splitlines()[-1] == "421 passed, 0 failed, 2 skipped"


def test_failures_are_shown_with_verbose(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(json.dumps({"manifests": {"default": {"a": "INT64"}}, "cases": [
        {"id": 0, "name": "right", "expr": "a + 1", "manifest": "default",
         "attributes": {"a": {"int64": 1}}, "want": {"type": "INT64", "value": 2}},
        {"id": 1, "name": "wrong", "expr": "a + 1", "manifest": "default",
         "attributes": {"a": {"int64": 1}}, "want": {"type": "INT64", "value": 3}}]}))
    out = mixerhub("--cases", str(cases), "--verbose")
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1] == "1 passed, 1 failed, 0 skipped"
    assert "FAILED #1 a + 1" in out.stdout and "expected:" in out.stdout


def test_one_expression_prints_type_value_and_references(tmp_path: Path) -> None:
    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps({"request.headers": {"x-user": "alice", "x-id": "1"}}))
    out = mixerhub('request.headers["x-user"] | "anonymous"', "--attributes", f"@{attrs}")
    assert out.returncode == 0
    assert out.stdout.splitlines() == ["type: STRING", 'value: "alice"',
                                       "referenced: request.headers, request.headers[x-user]"]


def test_manifest_adds_attributes_and_errors_are_reported(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("kind: attributemanifest\nspec:\n  attributes:\n"
                        "    tenant.tier: {valueType: INT64}\n")
    ok = mixerhub("tenant.tier >= 2", "--attributes", '{"tenant.tier": 3}',
                  "--manifest", str(manifest))
    assert ok.stdout.splitlines()[:2] == ["type: BOOL", "value: true"]
    unknown = mixerhub("tenant.tier >= 2")
    assert unknown.returncode == 1 and "unknown attribute 'tenant.tier'" in unknown.stdout
    missing = mixerhub("request.size + 1", "--attributes", "{}")
    assert missing.returncode == 1
    assert "evaluation error: lookup failed: 'request.size'" in missing.stdout
