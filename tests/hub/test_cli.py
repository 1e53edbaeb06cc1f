"""`mixerhub serve` and `mixerhub version` as a user runs them: a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mixerhub import __version__

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "mixerhub", "version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"mixerhub {__version__}"


def wait_http(url: str, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path):
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "MIXERHUB_GRPC": f"127.0.0.1:{grpc_port}"}
    log = (tmp_path / "hub.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixerhub", "serve", "--http", f"127.0.0.1:{http_port}",
         "--config", str(ROOT / "examples" / "quickstart")],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{http_port}/readyz")
        yield proc, grpc_port, http_port, tmp_path / "hub.log"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_serve_answers_on_both_ports_and_stops_on_sigterm(served) -> None:
    proc, grpc_port, http_port, log = served
    assert json.loads(wait_http(f"http://127.0.0.1:{http_port}/healthz")) == {"status": "ok"}
    metrics = wait_http(f"http://127.0.0.1:{http_port}/metrics").decode()
    assert "mixerhub_checks_total" in metrics and "mixerhub_ready 1.0" in metrics
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service="istio.mixer.v1.Mixer"),
                           timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][-1] == "stopped"
    assert all({"timestamp", "level", "event"} <= e.keys() for e in events)


def test_reflection_lists_the_mixer_service(served) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, grpc_port, _, _ = served
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in reply.list_services_response.service}
    assert {"istio.mixer.v1.Mixer", "grpc.health.v1.Health"} <= names


def test_bad_config_path_exits_with_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mixerhub", "serve", "--grpc", "127.0.0.1:0",
                          "--http", "127.0.0.1:0", "--config", str(tmp_path / "nope.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "nope.yaml: no such file or directory" in out.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag in ("--grpc", "--http"):
            other = "--http" if flag == "--grpc" else "--grpc"
            out = subprocess.run([sys.executable, "-m", "mixerhub", "serve", flag,
                                  f"127.0.0.1:{port}", other, "127.0.0.1:0"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 1, out.stderr
            assert "mixerhub: cannot serve:" in out.stderr
            assert "Traceback" not in out.stderr


def test_config_flag_replaces_the_environment(tmp_path: Path) -> None:
    """MIXERHUB_CONFIG names a broken file; --config a good one: only --config is read."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [\n")
    env = {**os.environ, "MIXERHUB_CONFIG": str(broken)}
    out = subprocess.run([sys.executable, "-m", "mixerhub", "serve", "--grpc", "127.0.0.1:0",
                          "--http", "127.0.0.1:0", "--config", str(tmp_path / "missing.yaml")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "missing.yaml: no such file" in out.stderr and "broken.yaml" not in out.stderr
