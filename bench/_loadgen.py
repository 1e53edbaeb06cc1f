"""The two load generators bench/compare.py drives: fortio at a fixed rate (latency) and wrk
at saturation (throughput). Each returns plain numbers; neither knows about scenarios.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from envoy_filters import _latency


def fortio_fixed(fortio: Path, url: str, rate: float, seconds: float, connections: int,
                 headers: dict[str, str]) -> dict[str, Any]:
    """``fortio load`` at ``rate`` requests/s: actual rate, p50/p90/p99 in ms, non-2xx."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [str(fortio), "load", "-qps", f"{rate:g}", "-c", str(connections),
                   "-t", f"{seconds:g}s", "-p", "50,90,99", "-r", "0.00001",
                   "-loglevel", "Error", "-allow-initial-errors", "-uniform", "-json", out.name]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        done = subprocess.run([*command, url], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"fortio failed: {done.stderr[-1500:]}")
        result = json.loads(Path(out.name).read_text())
    histogram = result["DurationHistogram"]
    percentiles = {p["Percentile"]: p["Value"] * 1000 for p in histogram["Percentiles"]}
    codes = result.get("RetCodes") or {}
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    return {"target_rps": rate, "rps": result["ActualQPS"], "requests": histogram["Count"],
            "p50_ms": percentiles[50], "p90_ms": percentiles[90], "p99_ms": percentiles[99],
            "errors": histogram["Count"] - ok}


def wrk_max(url: str, seconds: float, connections: int, script: Path | None = None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    """wrk, 2 threads, keep-alive, as fast as the server answers: rps, p50/p99, non-2xx."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    return {"rps": float(rps.group(1)), "requests": int(total.group(1)),
            "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%"),
            "errors": (int(non2xx.group(1)) if non2xx else 0)
                      + (sum(map(int, errors.groups())) if errors else 0)}
