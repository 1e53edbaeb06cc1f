"""examples/envoy/run.sh starts hub, Envoy and upstream, and its smoke test passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services._proc import free_port

RUN = Path(__file__).parents[2] / "examples" / "envoy" / "run.sh"


@pytest.mark.parametrize("mode", ["ext_authz", "lua"])
def test_example_smoke(mode: str) -> None:
    ports = {name: str(free_port()) for name in
             ("ENVOY_PORT", "ADMIN_PORT", "HUB_GRPC", "HUB_HTTP", "UPSTREAM_PORT")}
    env = {**os.environ, **ports, "MIXERHUB_BIN": str(Path(sys.executable).parent)}
    done = subprocess.run(["bash", str(RUN), mode, "--smoke"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke test passed" in done.stdout
    assert done.stdout.count("ok: ") == 4
