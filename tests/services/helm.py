"""Where provision_helm.sh puts Helm (``MIXERHUB_HELM`` overrides), and the rule for a
missing binary: the chart test skips on a developer's machine, and fails in CI."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).with_name("provision_helm.sh")


def helm_binary() -> Path:
    """The pinned Helm of provision_helm.sh, or ``MIXERHUB_HELM``."""
    if os.environ.get("MIXERHUB_HELM"):
        return Path(os.environ["MIXERHUB_HELM"])
    version = re.search(r"^HELM_VERSION=(\S+)$", _SCRIPT.read_text(), re.M)
    assert version, "provision_helm.sh names no HELM_VERSION"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mixerhub" / f"helm-{version.group(1)}" / "helm"


def require_helm() -> Path:
    """The Helm binary; absent, the calling test skips, or fails when ``CI=true``."""
    program = helm_binary()
    if program.exists():
        return program
    message = f"no Helm at {program}: run `make services` (tests/services/provision_helm.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
