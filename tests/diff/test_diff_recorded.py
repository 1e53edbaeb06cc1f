"""End to end: a real hub records checks (rotating its file), `mixerhub diff` replays them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from diffkit import BASE, CANDIDATE, RESOURCE_EXHAUSTED, bag, write_config

from mixerhub.app import Hub, Settings
from mixerhub.decisions import decision_files
from mixerhub.diff.command import DiffOptions, run_diff
from mixerhub.proxy_filter.mixer_client import MixerClient
from mixerhub.verdict import QuotaRequest


async def test_checks_recorded_by_the_hub_are_replayed(tmp_path: Path) -> None:
    base = write_config(tmp_path, "base.yaml", *BASE)
    candidate = write_config(tmp_path, "candidate.yaml", *CANDIDATE)
    recorded = tmp_path / "checks.jsonl"
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=(base,), watch=False,
                       record_checks=str(recorded), record_max_bytes=40_000,
                       record_backups=20))
    await hub.start()
    try:
        client = MixerClient(f"127.0.0.1:{hub.grpc.port}")
        for i in range(400):
            # Ask for a quota no rule handles on some checks: granted in full, not replayed.
            quotas = {"requests": QuotaRequest(1)} if i % 3 == 0 else None
            await client.check(bag(i), quotas)
        await client.close()
        await _recorded(recorded, 400)  # see _recorded
    finally:
        await hub.stop()
    files = decision_files(recorded)
    assert len(files) > 2  # the recording rotated
    report = await run_diff(DiffOptions((base,), (candidate,), (str(recorded),)))
    assert report.traffic == [str(p) for p in files]
    assert (report.checks, report.broken) == (400, 0)
    assert report.changed == 110  # as in the file built by hand (test_diff_cli)
    assert (report.recorded_agree, report.recorded_differ) == (400, [])
    assert RESOURCE_EXHAUSTED not in {t.change.candidate_code for t in report.transitions}


async def _recorded(path: Path, count: int, timeout: float = 10.0) -> None:
    """Wait until ``count`` lines are on disk. Stopping the hub while its file sink is in
    the middle of a write can lose that write (the recorder cancels the sink's task; the
    write's thread then races the close), which is not what this test is about."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if sum(p.read_bytes().count(b"\n") for p in decision_files(path)) >= count:
            return
        await asyncio.sleep(0.05)
