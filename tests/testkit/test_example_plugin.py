"""examples/adapter-plugin's own tests, written with mixerhub.testkit, pass the way its
author runs them: pytest in that folder with the package importable, its own pytest
settings and conftest (the kit's fixture)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "adapter-plugin"


def test_the_example_plugins_tests_pass_with_the_kit() -> None:
    env = {**os.environ, "PYTHONPATH": str(PLUGIN / "src")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
                          cwd=PLUGIN, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 7, done.stdout
    # the example's own settings (pyproject.toml), not mixerhub's
    assert f"rootdir: {PLUGIN}" in done.stdout and "configfile: pyproject.toml" in done.stdout
