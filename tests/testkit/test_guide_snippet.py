"""The test-kit example in the adapter authoring guide (docs/plugins.md) runs as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"


def snippet() -> str:
    section = GUIDE.read_text().split("### With the test kit (`mixerhub.testkit`)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "no python block in the test-kit section"
    return match.group(1)


def test_the_guides_test_kit_example_passes(tmp_path: Path) -> None:
    code = snippet()
    assert "from mixerhub.testkit import" in code
    (tmp_path / "test_prefixchecker_kit.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples" / "adapter-plugin" / "src")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_prefixchecker_kit.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^3 passed", done.stdout.splitlines()[-1]), done.stdout
