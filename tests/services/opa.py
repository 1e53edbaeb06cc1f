"""A real OPA server (built by provision_opa.sh from its Go module) for the tests.

``opa_server`` is one server per test session on a free 127.0.0.1 port, with no policies;
``opa_url`` hands a test its URL after deleting every policy. A test that needs OPA to fail
starts its own :class:`OpaServer` and stops it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services._proc import free_port, stop, wait_until

_SCRIPT = Path(__file__).with_name("provision_opa.sh")


def opa_binary() -> Path:
    """Where provision_opa.sh puts the pinned version (``MIXERHUB_OPA`` overrides)."""
    if os.environ.get("MIXERHUB_OPA"):
        return Path(os.environ["MIXERHUB_OPA"])
    version = re.search(r"^OPA_VERSION=(\S+)$", _SCRIPT.read_text(), re.M)
    assert version, "provision_opa.sh names no OPA_VERSION"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mixerhub" / f"opa-{version.group(1)}" / "opa"


class OpaServer:
    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OpaServer:
        program = opa_binary()
        if not program.exists():
            pytest.fail(f"no OPA server at {program}: run `make services` "
                        "(tests/services/provision_opa.sh)")
        for _ in range(3):
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                [str(program), "run", "--server", "--addr", f"127.0.0.1:{self.port}",
                 "--log-level", "error", "--skip-version-check",
                 "--shutdown-grace-period", "1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(self._healthy, self.proc, "opa")
                return self
            except RuntimeError:
                self.port = 0
        raise RuntimeError("opa did not start")

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def request(self, method: str, path: str, body: bytes | None = None) -> dict:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def delete_policies(self) -> None:
        for policy in self.request("GET", "/v1/policies").get("result", []):
            self.request("DELETE", f"/v1/policies/{policy['id']}")

    def _healthy(self) -> bool:
        try:
            self.request("GET", "/health")
            return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def opa_server() -> Iterator[OpaServer]:
    server = OpaServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def opa_url(opa_server: OpaServer) -> str:
    """The session's OPA, with no policies loaded."""
    opa_server.delete_policies()
    return opa_server.url


@pytest.fixture
def own_opa() -> Iterator[OpaServer]:
    """An OPA of this test's own, which the test may stop to make OPA fail."""
    server = OpaServer().start()
    try:
        yield server
    finally:
        server.stop()
