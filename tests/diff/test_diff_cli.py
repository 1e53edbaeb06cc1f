"""`mixerhub diff` from the command line: broken lines reported with file and line while
the rest is counted (issue #12, must-show 3), the JSON report, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from diffkit import BASE, CANDIDATE, bag, base_code, combination, line, write_config

from mixerhub.cli import main
from mixerhub.decisions import DecisionReadError, read_decisions
from mixerhub.diff.lines import BrokenLine, LineChecker
from mixerhub.attributes.types import default_manifest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "diff-report.schema.json").read_text())


def good(i: int) -> bytes:
    return line(i, bag(i), base_code(*combination(i)))


def edited(i: int, **attributes: Any) -> bytes:
    """A recorded line whose attributes are changed as JSON (values the hub never writes)."""
    event = json.loads(good(i))
    event["attributes"].update(attributes)
    return json.dumps(event).encode() + b"\n"


def schema_2(i: int) -> bytes:
    event = json.loads(good(i))
    event["schema_version"] = 2
    return json.dumps(event).encode() + b"\n"


BAD_LINES = {  # line → the reason reported (read_decisions words attribute errors alike)
    b"{not json\n": "not JSON: ",
    schema_2(3): "unknown schema_version 2",
    # request.size is read by no rule: the line is broken all the same, though a line
    # with the same referenced values was replayed before it.
    edited(0, **{"request.size": "12"}):
        "attribute 'request.size': expected INT64 (an integer), got string '12'",
    edited(5, **{"request.path": None}):
        "attribute 'request.path': expected STRING (a string), got null None",
    edited(6, **{"request.headers": {"x": 1}}):
        "attribute 'request.headers': expected STRING_MAP (an object of strings), got object "
        "{'x': 1}: every value of the object must be a string",
    edited(7, **{"request.time": "yesterday"}):
        "attribute 'request.time': expected TIMESTAMP (RFC 3339 text, e.g. "
        "\"2026-11-30T12:00:00Z\"), got string 'yesterday'",
    edited(8, **{"my.score": [1]}):
        "attribute 'my.score': not in the attribute manifest, and a JSON array does not say "
        "its type (use a string, number, boolean or object of strings)",
    b'{"schema_version":1,"attributes":{}}\n': "missing field 'verdict.status.code'",
}


@pytest.fixture
def configs(tmp_path: Path) -> tuple[str, str]:
    return (write_config(tmp_path, "base.yaml", *BASE),
            write_config(tmp_path, "candidate.yaml", *CANDIDATE))


def diff_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diff", "--jobs", "1", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_broken_lines_are_reported_with_file_and_line_and_the_rest_counted(
        tmp_path: Path, configs: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    base, candidate = configs
    # A rotated recording: checks.jsonl.1 (older) holds two checks and a broken line.
    (tmp_path / "checks.jsonl.1").write_bytes(good(100) + b"{not json\n" + good(101))
    bad = list(BAD_LINES)
    body = [good(0), *bad[1:4], b"\n", good(1), *bad[4:], good(2)]
    (tmp_path / "checks.jsonl").write_bytes(b"".join(body))
    code, out, _ = diff_cli(capsys, "--base", base, "--candidate", candidate, "--traffic",
                            str(tmp_path / "checks.jsonl"), "--json", str(tmp_path / "r.json"))
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["checks"]["read"] == 5  # 100, 101, 0, 1, 2
    assert report["checks"]["broken_lines"] == len(BAD_LINES)
    older, newer = str(tmp_path / "checks.jsonl.1"), str(tmp_path / "checks.jsonl")
    assert report["traffic"] == [older, newer]
    numbered = [f"{older}:2"] + [f"{newer}:{n}" for n in (2, 3, 4, 7, 8, 9, 10)]
    assert [b["where"] for b in report["broken_lines"]] == numbered
    reasons = [BAD_LINES[b"{not json\n"]] + [BAD_LINES[x] for x in bad[1:]]
    for got, want in zip(report["broken_lines"], reasons):
        assert got["error"].startswith(want), (got, want)
    assert f"Broken lines: {len(BAD_LINES)} (skipped)" in out
    assert f"  {newer}:2: unknown schema_version 2" in out


def test_the_line_check_words_errors_as_read_decisions_does() -> None:
    checker = LineChecker([default_manifest()])
    for raw, reason in BAD_LINES.items():
        if not reason.startswith("attribute"):
            continue
        with pytest.raises(BrokenLine) as caught:
            checker.read(raw)
        errors: list[DecisionReadError] = []
        list(read_decisions([raw], on_error=errors.append))
        assert [str(e) for e in errors] == [f"<lines>:1: {caught.value}"]
        assert str(caught.value) == reason


def test_the_json_report_has_the_documented_shape(
        tmp_path: Path, configs: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    base, candidate = configs
    traffic = tmp_path / "checks.jsonl"
    traffic.write_bytes(b"".join(good(i) for i in range(400)) + b"{not json\n")
    code, out, _ = diff_cli(capsys, "--base", base, "--candidate", candidate,
                            "--traffic", str(traffic), "--json", "-", "--examples", "2")
    assert code == 0
    report = json.loads(out)  # nothing but JSON on stdout
    jsonschema.validate(report, SCHEMA)
    assert report["checks"] == {"read": 400, "replayed": 400, "changed": 110,
                                "unchanged": 290, "not_replayed": 0, "broken_lines": 1}
    assert report["transitions"][0] == {
        "from": "OK", "to": "PERMISSION_DENIED", "from_code": 0, "to_code": 7,
        "changed": ["status"], "label": "OK → PERMISSION_DENIED", "checks": 56}
    assert len(report["examples"]) == 2
    assert report["examples"][0]["candidate"] == {
        "code": 7, "status": "PERMISSION_DENIED", "message": "admin is closed",
        "rule": "no-admin.istio-system"}


def test_exit_codes(tmp_path: Path, configs: tuple[str, str],
                    capsys: pytest.CaptureFixture[str]) -> None:
    base, candidate = configs
    traffic = tmp_path / "checks.jsonl"
    traffic.write_bytes(b"".join(good(i) for i in range(200)))
    common = ["--traffic", str(traffic)]
    assert diff_cli(capsys, "--base", base, "--candidate", candidate, *common)[0] == 0
    assert diff_cli(capsys, "--base", base, "--candidate", candidate, *common,
                    "--fail-on-change")[0] == 1
    assert diff_cli(capsys, "--base", base, "--candidate", base, *common,
                    "--fail-on-change")[0] == 0
    code, _, err = diff_cli(capsys, "--base", base, "--candidate", candidate,
                            "--traffic", str(tmp_path / "missing.jsonl"))
    assert (code, err.strip()) == (2, f"mixerhub diff: {tmp_path / 'missing.jsonl'}: no such "
                                      "file (nor rotated backups missing.jsonl.N)")
    broken = write_config(tmp_path, "broken.yaml", BASE[0].replace("denier", "nosuch"))
    code, _, err = diff_cli(capsys, "--base", base, "--candidate", broken, *common)
    assert code == 2 and err.startswith("mixerhub diff: candidate config does not load:")
    assert "unknown adapter 'nosuch'" in err
    (tmp_path / "junk.jsonl").write_bytes(b"junk\n")
    code, _, err = diff_cli(capsys, "--base", base, "--candidate", candidate,
                            "--traffic", str(tmp_path / "junk.jsonl"))
    assert code == 2 and "no recorded check could be read" in err


def test_the_console_script_runs_a_diff_from_a_glob(tmp_path: Path,
                                                    configs: tuple[str, str]) -> None:
    base, candidate = configs
    for part in range(2):
        (tmp_path / f"part-{part}.jsonl").write_bytes(
            b"".join(good(i) for i in range(part * 200, part * 200 + 200)))
    out = subprocess.run(
        [sys.executable, "-m", "mixerhub", "diff", "--base", base, "--candidate", candidate,
         "--traffic", str(tmp_path / "part-*.jsonl"), "--fail-on-change"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "400 checks read, 400 replayed: 110 changed (27.50%)" in out.stdout
    assert re.search(r"\n  OK → PERMISSION_DENIED +56\n", out.stdout)


def test_standard_input_is_a_traffic_source(tmp_path: Path, configs: tuple[str, str]) -> None:
    base, candidate = configs
    out = subprocess.run(
        [sys.executable, "-m", "mixerhub", "diff", "--base", base, "--candidate", candidate,
         "--traffic", "-", "--json", "-"],
        input=b"".join(good(i) for i in range(200)) + b"oops\n", capture_output=True,
        timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["checks"]["read"], report["checks"]["changed"]) == (200, 55)
    assert report["broken_lines"][0]["where"] == "-:201"
