"""One import package: installing mixerhub must not shadow PyPI's `adapters` or `hub`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_only_the_mixerhub_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    [wheel] = tmp_path.glob("mixerhub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"mixerhub", next(t for t in tops if t.endswith(".dist-info"))}
    for expected in ("mixerhub/adapters/__init__.py", "mixerhub/templates/__init__.py",
                     "mixerhub/proxy_filter/mixer_client.py", "mixerhub/data/global_dictionary.yaml",
                     "mixerhub/api/mixer/v1/check_pb2.py", "mixerhub/api/mixer/v1/check.proto"):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mixerhub = mixerhub.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
