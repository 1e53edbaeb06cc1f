"""/debug/config and /debug/plugins; `mixerhub validate` and `mixerhub adapters`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiohttp import ClientSession

from mixerhub.app import Hub, Settings

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
ERRORS = ROOT / "tests" / "config" / "errors"


async def get_json(port: int, path: str) -> object:
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            assert response.status == 200
            return await response.json()


async def test_debug_pages_show_the_snapshot_and_plugins() -> None:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(str(QUICKSTART),),
                       watch=False))
    await hub.start()
    try:
        config = await get_json(hub.http.port, "/debug/config")
        plugins = await get_json(hub.http.port, "/debug/plugins")
    finally:
        await hub.stop()
    assert config["version"] >= 1
    assert {r["name"] for r in config["rules"]} == {
        "no-admin.istio-system", "ratings-callers.istio-system", "quota.istio-system",
        "telemetry.istio-system"}
    handlers = {h["name"]: h for h in config["handlers"]}
    assert handlers["deny-admin.handler.istio-system"]["adapter"] == "denier"
    assert handlers["deny-admin.handler.istio-system"]["status"] == "OK"
    names = {p["name"] for p in plugins}
    assert {"denier", "listchecker", "memquota", "stdio", "prometheus", "templates"} <= names
    assert all(p["distribution"] == "mixerhub" for p in plugins if p["name"] == "denier")


def mixerhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mixerhub", *args], capture_output=True,
                          text=True, timeout=60)


def test_validate_ok_and_errors() -> None:
    ok = mixerhub("validate", str(QUICKSTART))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 14 documents, 4 rules")
    bad = mixerhub("validate", str(ERRORS / "unknown_key.yaml"), str(ERRORS / "type_mismatch.yaml"))
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("unknown_key.yaml:8: rule/r: spec: unknown key 'actionz'")
    assert "type_mismatch.yaml:7: rule/r: spec.match: type mismatch" in lines[1]
    assert "2 errors" in bad.stderr


def test_validate_never_contacts_a_backend(tmp_path: Path) -> None:
    """A list provider that accepts connections and never answers: contacting it would
    hang; validate must finish without a word from it."""
    import socket

    import yaml

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    text = yaml.safe_load((ROOT / "tests" / "cases" / "rules" / "fail_policy.yaml").read_text())
    config = tmp_path / "policy.yaml"
    config.write_text(text["config"].replace("127.0.0.1:9", f"127.0.0.1:{port}"))
    try:
        out = mixerhub("validate", str(config))
        listener.settimeout(0.2)
        try:
            listener.accept()[0].close()
            contacted = True
        except TimeoutError:
            contacted = False
    finally:
        listener.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert not contacted


def test_adapters_lists_builtins() -> None:
    out = mixerhub("adapters")
    assert out.returncode == 0
    for name in ("denier", "listchecker", "memquota", "stdio", "prometheus"):
        assert name in out.stdout
