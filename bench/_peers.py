"""The peers bench/compare.py measures mixerhub against: where bench/peers/provision_*.sh
put them, provisioning them with progress, and starting them on free 127.0.0.1 ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.services._proc import free_port, stop, wait_until

PEERS = Path(__file__).resolve().with_name("peers")


@dataclass(frozen=True)
class Peer:
    name: str  # provision_<name>.sh
    variable: str  # the script's pinned-version line
    folder: str  # <folder>-<version> in the cache
    program: str  # the file in that folder
    override: str = ""  # an environment variable naming a binary built elsewhere

    @property
    def version(self) -> str:
        if self.override and os.environ.get(self.override):  # a binary built elsewhere
            return _reported_version(Path(os.environ[self.override]), self.override)
        text = (PEERS / f"provision_{self.name}.sh").read_text()
        found = re.search(rf"^{self.variable}=(\S+)$", text, re.M)
        if not found:
            raise RuntimeError(f"provision_{self.name}.sh names no {self.variable}")
        return found.group(1)

    @property
    def path(self) -> Path:
        if self.override and os.environ.get(self.override):
            return Path(os.environ[self.override])
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cache / "mixerhub" / f"{self.folder}-{self.version}" / self.program


def _reported_version(binary: Path, variable: str) -> str:
    """What ``BINARY version`` says (``Version: X``), so a row names what really ran."""
    try:
        said = subprocess.run([str(binary), "version"], capture_output=True, text=True,
                              timeout=30).stdout
    except OSError:
        said = ""
    found = re.search(r"^Version:\s*(\S+)", said, re.M)
    return f"{found.group(1)} (from {variable})" if found else f"from {variable}"


FORTIO = Peer("fortio", "FORTIO_VERSION", "fortio", "fortio")
RATELIMIT = Peer("ratelimit", "RATELIMIT_VERSION", "ratelimit", "ratelimit")
OPA_ENVOY = Peer("opa_envoy", "OPA_ENVOY_VERSION", "opa-envoy", "opa-envoy-plugin",
                 "MIXERHUB_OPA_ENVOY")
CEL_RUST = Peer("cel_rust", "CEL_RUST_VERSION", "cel-rust", "bin/python")


def provision(peer: Peer, progress: Callable[[str], None]) -> str | None:
    """Run the peer's provision script, passing each line it prints to ``progress``;
    None when the peer is ready, else why not (the script's last words)."""
    proc = subprocess.Popen(["bash", str(PEERS / f"provision_{peer.name}.sh")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        last = line.strip() or last
        progress(last)
    if proc.wait() != 0 or not peer.path.exists():
        return last or f"provision_{peer.name}.sh failed"
    return None


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.read().decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def ratelimit_service(folder: Path, config: Path, redis_port: int) -> Iterator[int]:
    """envoyproxy/ratelimit reading ``config`` (a descriptor file) with its counters in the
    Redis on ``redis_port``; yields its gRPC port."""
    runtime = folder / "rl-runtime"
    (runtime / "ratelimit" / "config").mkdir(parents=True, exist_ok=True)
    (runtime / "ratelimit" / "config" / config.name).write_text(config.read_text())
    grpc, http, debug = free_port(), free_port(), free_port()
    settings = {
        "HOST": "127.0.0.1", "PORT": str(http), "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc), "DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": str(debug),
        "RUNTIME_ROOT": str(runtime), "RUNTIME_SUBDIRECTORY": "ratelimit",
        "RUNTIME_WATCH_ROOT": "false", "USE_STATSD": "false", "LOG_LEVEL": "warn",
        "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": f"127.0.0.1:{redis_port}",
    }
    log = (folder / "ratelimit.log").open("wb")
    proc = subprocess.Popen([str(RATELIMIT.path)], env={**os.environ, **settings},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "OK" in _get(f"http://127.0.0.1:{http}/healthcheck"), proc,
                   "ratelimit", 30)
        yield grpc
    finally:
        stop(proc)
        log.close()


OPA_ENVOY_POLICY = PEERS / "authz.rego"


@contextlib.contextmanager
def opa_envoy_service(folder: Path) -> Iterator[int]:
    """OPA-Envoy with bench/peers/authz.rego, ext_authz gRPC on a free port (yielded)."""
    grpc, http = free_port(), free_port()
    log = (folder / "opa-envoy.log").open("wb")
    proc = subprocess.Popen(
        [str(OPA_ENVOY.path), "run", "--server", "--addr", f"127.0.0.1:{http}",
         "--log-level", "error", "--skip-version-check",
         "--set", f"plugins.envoy_ext_authz_grpc.addr=127.0.0.1:{grpc}",
         "--set", "plugins.envoy_ext_authz_grpc.path=mixerhub/bench/allow",
         "--set", "decision_logs.console=false", str(OPA_ENVOY_POLICY)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: bool(_get(f"http://127.0.0.1:{http}/health")), proc, "opa-envoy", 30)
        yield grpc
    finally:
        stop(proc)
        log.close()
