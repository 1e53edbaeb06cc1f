"""``mixerhub test``: policy unit tests run from the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"

WRONG = """\
config: [policy.yaml]
cases:
- name: admin is allowed (wrong)
  attributes: {request.path: /admin/x}
  want: {code: OK, valid_use_count: 1000}
- name: plain request
  attributes: {request.path: /x}
  want: {code: OK}
"""

UNKNOWN_ATTRIBUTE = """\
config: [policy.yaml]
cases:
- name: typo
  attributes: {request.pth: /admin/x}
  want: {code: PERMISSION_DENIED}
- name: bad want key
  attributes: {request.path: /x}
  want: {cod: OK}
- name: still runs
  attributes: {request.path: /admin/x}
  want: {code: 7, message: admin}
"""


def mixerhub(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mixerhub", "test", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def with_policy(tmp_path: Path, name: str, text: str) -> Path:
    shutil.copy(QUICKSTART / "policy.yaml", tmp_path / "policy.yaml")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_examples_pass() -> None:
    out = mixerhub("examples/")
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.endswith(" passed, 0 failed") and int(last.split()[0]) >= 6
    assert "quickstart_test.yaml ...." in out.stdout


def test_a_wrong_expectation_fails_with_expected_and_actual(tmp_path: Path) -> None:
    path = with_policy(tmp_path, "wrong_test.yaml", WRONG)
    out = mixerhub(str(path))
    assert out.returncode == 1
    assert f"{path} F." in out.stdout
    assert f"{path}:3: case 'admin is allowed (wrong)'" in out.stdout
    block = out.stdout.split("case 'admin is allowed (wrong)'")[1]
    assert "expected: OK (0)" in block and "actual:   PERMISSION_DENIED (7)" in block
    assert "valid_use_count" not in block  # only the differing fields
    assert out.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_unknown_attribute_and_bad_want_key_are_errors_and_the_rest_runs(tmp_path: Path) -> None:
    path = with_policy(tmp_path, "typo_test.yaml", UNKNOWN_ATTRIBUTE)
    out = mixerhub(str(path))
    assert out.returncode == 1
    assert f"{path} EE." in out.stdout
    assert f"{path}:3: unknown attribute 'request.pth'" in out.stdout
    assert f"{path}:8: unknown want key 'cod'" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "1 passed, 0 failed, 2 errors"


def test_a_broken_config_is_an_error_and_other_files_still_run(tmp_path: Path) -> None:
    with_policy(tmp_path, "good_test.yaml", WRONG.replace("{code: OK, valid", "{code: 7, valid"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text(
        "apiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {name: r}\n"
        "spec:\n  match: request.path ==\n")
    (broken / "broken_test.yaml").write_text(
        "config: [config.yaml]\ncases:\n- name: x\n  want: {code: OK}\n")
    out = mixerhub(str(tmp_path))
    assert out.returncode == 1
    assert f"{broken / 'broken_test.yaml'}:1: config error" in out.stdout
    assert f"{broken / 'config.yaml'}:5: rule/r: spec.match" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "2 passed, 0 failed, 1 error"


def test_junit_report_counts(tmp_path: Path) -> None:
    wrong = with_policy(tmp_path, "wrong_test.yaml", WRONG)
    typo = with_policy(tmp_path, "typo_test.yaml", UNKNOWN_ATTRIBUTE)
    report = tmp_path / "report.xml"
    out = mixerhub(str(wrong), str(typo), "--junit", str(report))
    assert out.returncode == 1
    suites = ET.parse(report).getroot().findall("testsuite")
    counts = {s.get("name"): (s.get("tests"), s.get("failures"), s.get("errors")) for s in suites}
    assert counts == {str(wrong): ("2", "1", "0"), str(typo): ("3", "0", "2")}
    failed = [c for s in suites for c in s.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["admin is allowed (wrong)"]
    assert "PERMISSION_DENIED" in (failed[0].find("failure").text or "")  # type: ignore[union-attr]


def test_no_test_files_exits_2(tmp_path: Path) -> None:
    out = mixerhub(str(tmp_path))
    assert out.returncode == 2
    assert "no *_test.yaml" in out.stderr
