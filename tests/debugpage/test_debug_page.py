"""The live debug page (/debug/): its JSON, where it is routed, and the page itself as
headless Chromium renders it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from mixerhub.app import Hub, Settings
from mixerhub.redact import REDACTED
from mixerhub.server.debugpage import RING_SIZE
from tests.debugpage.conftest import ROOT, mixer_check

ARTIFACTS = ROOT / "tests" / "artifacts"
NOT_FOUND, PERMISSION_DENIED = 5, 7


async def get(port: int, path: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", **kwargs) as response:
            return response.status, dict(response.headers), await response.text()


async def state(hub: Hub) -> dict[str, Any]:
    status, _, text = await get(hub.http.port, "/debug/state")
    assert status == 200
    return json.loads(text)  # type: ignore[no-any-return]


async def make_traffic(hub: Hub) -> dict[str, str]:
    """A denied check (its token is unknown), the same allowed check twice (the second a
    cache hit), and one whose list provider is down. Returns the values to look for."""
    uid = f"kubernetes://debugpage-{secrets.token_hex(4)}"
    token = f"Bearer s3cret-{secrets.token_hex(8)}"
    denied = await mixer_check(hub, {"source.uid": uid, "request.path": "/api",
                                     "request.headers": {"authorization": token,
                                                         "x-trace": "t1"}})
    assert denied.precondition.status.code == NOT_FOUND
    assert token in denied.precondition.status.message  # the adapter quotes it; the page won't
    for _ in range(2):
        allowed = await mixer_check(hub, {"source.uid": uid, "request.path": "/api",
                                          "request.headers": {"authorization":
                                                              "Bearer good-token"}})
        assert allowed.precondition.status.code == 0
    remote = await mixer_check(hub, {"source.uid": "kubernetes://other", "request.path": "/remote"})
    assert remote.precondition.status.code == 0  # failPolicy open
    return {"uid": uid, "token": token}


# ---- the JSON ----------------------------------------------------------------------------

async def test_state_shows_recent_decisions_with_referenced_values_redacted(
        debug_hub: Hub) -> None:
    sent = await make_traffic(debug_hub)
    status, _, text = await get(debug_hub.http.port, "/debug/state")
    assert status == 200
    assert sent["token"] not in text and "s3cret" not in text and "good-token" not in text
    body = json.loads(text)
    remote, hit, miss, denied = body["decisions"]  # newest first
    assert denied["verdict"]["code"] == NOT_FOUND and denied["verdict"]["http_status"] == 404
    assert denied["verdict"]["message"] == f"{REDACTED} is not whitelisted"
    assert denied["rules"] == ["token-gate.istio-system"]
    referenced = {r["name"]: r for r in denied["referenced"]}
    assert referenced["source.uid"]["value"] == sent["uid"]
    assert referenced["request.headers[authorization]"]["value"] == REDACTED
    assert "request.headers[x-trace]" not in referenced  # not read by any rule: not shown
    assert referenced["request.path"] == {"name": "request.path", "present": True,
                                          "value": "/api"}
    assert (miss["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["verdict"]["code"] == 0 and hit["snapshot_version"] == body["snapshot"]["version"]
    absent = {r["name"] for r in remote["referenced"] if not r["present"]}
    assert "source.labels" not in absent and "request.headers[authorization]" not in {
        r["name"] for r in remote["referenced"] if r["present"]}
    assert remote["rules"] == ["remote-callers.istio-system"]


async def test_state_counts_checks_and_the_decision_cache(debug_hub: Hub) -> None:
    await make_traffic(debug_hub)
    body = await state(debug_hub)
    assert body["checks"]["total"] == 4
    assert body["checks"]["by_source"]["mixer"] == {"ok": 3, "denied": 1, "error": 0}
    cache = body["cache"]
    # misses: the denial, the first allow, the failed provider (never stored); hits: one
    assert (cache["hits"], cache["misses"]) == (1, 3)
    assert cache["hit_rate"] == pytest.approx(0.25)
    assert cache["enabled"] and cache["size"] == 2 and cache["max_entries"] == 10_000
    assert body["reports"]["total"] == 0


async def test_state_marks_the_handler_whose_backend_fails(debug_hub: Hub) -> None:
    await make_traffic(debug_hub)
    adapters = {a["handler"]: a for a in (await state(debug_hub))["adapters"]}
    remote = adapters["remote-list.handler.istio-system"]
    assert remote["status"] == "failing" and remote["adapter"] == "listchecker"
    assert "not loaded" in remote["last_error"] and remote["last_error_time"].endswith("Z")
    assert remote["errors"] >= 1
    tokens = adapters["tokens.handler.istio-system"]
    assert (tokens["status"], tokens["errors"], tokens["last_error"]) == ("ok", 0, None)
    assert set(adapters) >= {"deny-admin.handler.istio-system", "metrics.handler.istio-system"}


async def test_errors_an_adapter_counts_itself_mark_it_failing(debug_hub: Hub) -> None:
    """Adapters count some errors themselves (AdapterEnv.on_error: a Kafka send, a list
    refresh); no dispatcher hook sees those, the count rising between two looks does."""
    handler = "tokens.handler.istio-system"

    async def tokens() -> dict[str, Any]:
        return next(a for a in (await state(debug_hub))["adapters"] if a["handler"] == handler)

    assert (await tokens())["status"] == "ok"
    debug_hub.metrics.adapter_errors.labels(handler).inc(2)
    after = await tokens()
    assert (after["status"], after["errors"]) == ("failing", 2)
    assert after["last_error"] == "2 error(s) counted by the adapter"


async def test_a_decision_that_cannot_be_shown_does_not_break_the_page(debug_hub: Hub
                                                                        ) -> None:
    from mixerhub.attributes.bag import Reference
    from mixerhub.verdict import CheckOutcome, Verdict

    await mixer_check(debug_hub, {"source.uid": "kubernetes://fine"})
    odd = CheckOutcome(Verdict(references=(Reference("x.odd", None, True),)), {})
    debug_hub.debug_page.recent.append((1.5, {"x.odd": object()}, odd, 7, False))
    newest, fine = (await state(debug_hub))["decisions"]
    assert newest == {"time": "1970-01-01T00:00:01.500000Z", "snapshot_version": 7,
                      "error": "cannot show this decision: no JSON form for a object"}
    assert fine["verdict"]["code"] == 0


async def test_state_without_config(hub: Hub) -> None:
    body = await state(hub)
    assert body["snapshot"]["note"] == "no config: all allowed"
    assert body["decisions"] == [] and body["adapters"] == []
    assert body["cache"] == {"enabled": False, "hits": 0, "misses": 0, "hit_rate": None,
                             "size": 0, "max_entries": 0}


async def test_state_lists_the_snapshot(debug_hub: Hub) -> None:
    snapshot = (await state(debug_hub))["snapshot"]
    rules = {r["name"]: r for r in snapshot["rules"]}
    assert rules["token-gate.istio-system"]["match"] == \
        'source.uid.startsWith("kubernetes://debugpage")'
    assert rules["token-gate.istio-system"]["actions"] == [
        {"handler": "tokens.handler.istio-system", "instances": ["bearer.instance.istio-system"]}]
    assert {"name": "tokens.handler.istio-system", "adapter": "listchecker"}.items() <= \
        next(h for h in snapshot["handlers"] if h["name"].startswith("tokens.")).items()
    assert {"name": "bearer.instance.istio-system", "template": "listentry"} in \
        snapshot["instances"]


async def test_the_ring_keeps_the_last_hundred_and_survives_a_reload(debug_hub: Hub) -> None:
    from tests.hub.test_mixer_wire import hand_check_request

    raw = hand_check_request()
    for _ in range(RING_SIZE + 5):
        await debug_hub.mixer.check(raw)
    assert len(debug_hub.debug_page.recent) == RING_SIZE
    assert await debug_hub.reload("test")
    await mixer_check(debug_hub, {"source.uid": "kubernetes://after-reload"})
    decisions = (await state(debug_hub))["decisions"]
    assert len(decisions) == RING_SIZE
    assert decisions[0]["snapshot_version"] == decisions[1]["snapshot_version"] + 1


async def test_the_page_redirect_and_assets(debug_hub: Hub) -> None:
    port = debug_hub.http.port
    status, headers, _ = await get(port, "/debug", allow_redirects=False)
    assert status == 302 and headers["Location"] == "/debug/"
    status, headers, html = await get(port, "/debug/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert '<script src="debug.js"' in html and "//" not in html  # nothing from elsewhere
    status, headers, script = await get(port, "/debug/debug.js")
    assert status == 200 and 'fetch("state"' in script
    assert "innerHTML" not in script  # request values only ever become text


# ---- where it is routed ------------------------------------------------------------------

@pytest.mark.parametrize("public", [False, True])
async def test_not_served_on_a_non_loopback_listener_without_debug_public(public: bool) -> None:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="0.0.0.0:0", debug_public=public))
    await hub.start()
    try:
        assert (await get(hub.http.port, "/healthz"))[0] == 200
        for path in ("/debug/", "/debug/state", "/debug/debug.js", "/debug/config"):
            assert (await get(hub.http.port, path, allow_redirects=False))[0] == (
                200 if public else 404), path
    finally:
        await hub.stop()


# ---- the page in a real browser ----------------------------------------------------------

def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (tests/services/provision_chromium.sh)")
        pytest.skip("chromium is not installed (tests/services/provision_chromium.sh)")
    return found


async def chromium(binary: str, profile: Path, *args: str) -> bytes:
    """Headless Chromium; returns what it printed on stdout (``--dump-dom``)."""
    process = await asyncio.create_subprocess_exec(
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_chromium_renders_the_live_page(debug_hub: Hub, tmp_path: Path) -> None:
    binary = chromium_binary()
    sent = await make_traffic(debug_hub)
    body = await state(debug_hub)
    url = f"http://127.0.0.1:{debug_hub.http.port}/debug/"

    dom = (await chromium(binary, tmp_path / "profile", "--dump-dom", url)).decode()
    assert "<title>mixerhub · debug</title>" in dom
    assert "updated " in dom and "cannot reach the hub" not in dom  # the poll succeeded
    assert sent["uid"] in dom  # the decision made above
    assert sent["token"] not in dom and "s3cret" not in dom and "good-token" not in dom
    assert REDACTED in dom and f"{REDACTED} is not whitelisted" in dom
    for rule in ("token-gate.istio-system", "remote-callers.istio-system",
                 "ratings-callers.istio-system"):
        assert rule in dom
    rate = f'{100 * body["cache"]["hit_rate"]:.1f}%'
    assert f'<div class="big" id="cache-rate">{rate}</div>' in dom
    assert '<span class="dot failing" title="failing">' in dom
    assert dom.count('<span class="dot ok" title="ok">') == len(body["adapters"]) - 1

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "debug-page.png"
    shot.unlink(missing_ok=True)
    await chromium(binary, tmp_path / "profile", f"--screenshot={shot}",
                   "--window-size=1280,1600", url)
    data = shot.read_bytes()
    assert png_size(data) == (1280, 1600)
    assert len(data) > 40_000  # a rendered page, not a blank one
