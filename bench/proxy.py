"""The Python proxy's overhead: straight to the upstream vs through ``mixerhub proxy`` with
its check cache (hits) vs through it with the cache off, same run; and the check cache's
lookup cost against a linear scan.

    .venv/bin/python bench/proxy.py [--seconds 10] [--concurrency 32] [--load wrk|python]
                                    [--skip-http]

HTTP scenarios (each figure: the load process sends a GET and reads the whole response,
over loopback, keep-alive connections, N requests in flight; the load is Debian's ``wrk``
when installed — one thread, so it leaves a core to the rest — else a Python aiohttp
client):
- direct: load → upstream (a minimal aiohttp app answering 120 bytes);
- proxy, cache hit: load → proxy → upstream; the hub (``mixerhub serve``, the quickstart
  config: a listchecker rule decides the request) is asked once, every later check is a
  hit in the proxy's check cache; the report of every request is batched to the hub;
- proxy, cache off (``--cache-size 0``): the same, with one hub Check per request.
Hub, upstream, proxy and load each run in their own process; on 2 cores they share the
CPU, so absolute numbers are lower than on dedicated machines; the ratios are the point.

Cache lookup (in process, one thread): the time of one ``CheckCache.lookup`` that hits,
with N entries of one shape (the usual case: a rule set reads the same attributes for
every request), against the baseline a cache without shapes must do: scan the entries and
compare each entry's referenced values with the request's (hit found at a random place).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOAD = ["python"]  # which load generator ran, for the table's title
sys.path.insert(0, str(ROOT))

from tests.services._proc import free_port, spawn, stop  # noqa: E402

# -- processes -------------------------------------------------------------------------------

def upstream_server(port: int) -> None:
    from aiohttp import web

    body = b'{"id": 0, "title": "a book", "ratings": [5, 4, 5], "padding": "' + b"x" * 48 + b'"}'

    async def handle(request: web.BaseRequest) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        runner = web.ServerRunner(web.Server(handle), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    from mixerhub.app import run

    run(main())


# -- load ------------------------------------------------------------------------------------

async def load(port: int, seconds: float, concurrency: int) -> dict[str, float]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/ratings/0"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def once() -> int:
            async with session.get(url, headers={"x-user": "alice"}) as r:
                await r.read()
                return r.status

        for _ in range(200):  # warm-up: connections, caches, the hub's first answer
            assert await once() == 200, "the scenario must allow the request"
        if not seconds:
            return {}
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await once()
                latencies.append(time.perf_counter() - t)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1e3, "p99": q[98] * 1e3,
            "n": len(latencies)}


def run_load(port: int, args: argparse.Namespace) -> dict[str, float]:
    from mixerhub.app import run

    out: dict[str, float] = {}

    async def main() -> None:
        seconds = 0.0 if args.load == "wrk" else args.seconds  # wrk: only the warm-up here
        out.update(await load(port, seconds, args.concurrency))

    run(main())
    return wrk(port, args) if args.load == "wrk" else out


def wrk(port: int, args: argparse.Namespace) -> dict[str, float]:
    text = subprocess.run(
        ["wrk", "-t1", f"-c{args.concurrency}", f"-d{args.seconds:.0f}s", "--latency",
         "-H", "x-user: alice", f"http://127.0.0.1:{port}/ratings/0"],
        capture_output=True, text=True, check=True).stdout
    assert "Non-2xx" not in text, text
    fields = dict(line.split(None, 1) for line in text.splitlines()
                  if line.strip().startswith(("50%", "99%")))
    total = next(int(line.split()[0]) for line in text.splitlines() if " requests in " in line)
    rps = next(float(line.split()[1]) for line in text.splitlines()
               if line.startswith("Requests/sec:"))
    return {"rps": rps, "p50": _ms(fields["50%"]), "p99": _ms(fields["99%"]), "n": total}


def _ms(text: str) -> float:
    text = text.strip()
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * factor
    raise ValueError(f"unknown wrk duration {text!r}")


PROXIES = {"proxy, check cache hits": (),
           "proxy, cache off (a hub Check each)": ("--cache-size", "0")}


@contextlib.contextmanager
def upstream_and_hub() -> Iterator[tuple[int, int, int]]:
    """The aiohttp upstream and the hub (quickstart config); yields (upstream, hub gRPC,
    hub HTTP) ports."""
    up_port, hub_grpc, hub_http = free_port(), free_port(), free_port()
    upstream = spawn([sys.executable, __file__, "--upstream-server", str(up_port)], up_port)
    try:
        hub = spawn([sys.executable, "-m", "mixerhub", "serve", "--grpc",
                     f"127.0.0.1:{hub_grpc}", "--http", f"127.0.0.1:{hub_http}", "--no-watch",
                     "--log-level", "warning", "--config", str(ROOT / "examples" / "quickstart")],
                    hub_grpc)
        try:
            yield up_port, hub_grpc, hub_http
        finally:
            stop(hub)
    finally:
        stop(upstream)


@contextlib.contextmanager
def proxy(ports: tuple[int, int, int], extra: tuple[str, ...]) -> Iterator[int]:
    """``mixerhub proxy`` in front of the upstream; yields its port."""
    up_port, hub_grpc, hub_http = ports
    port = free_port()
    proc = spawn([sys.executable, "-m", "mixerhub", "proxy", "--listen", f"127.0.0.1:{port}",
                  "--upstream", f"http://127.0.0.1:{up_port}", "--hub", f"127.0.0.1:{hub_grpc}",
                  "--hub-http", f"127.0.0.1:{hub_http}", "--log-level", "warning",
                  "--attribute", "destination.service.name=ratings",
                  "--attribute", 'source.labels={"version": "v1"}', *extra], port)
    try:
        yield port
    finally:
        stop(proc)


def http_scenarios(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results = {}
    with upstream_and_hub() as ports:
        print(f"… direct: {args.seconds:.0f} s at {args.concurrency} in flight", flush=True)
        results["direct to the upstream"] = run_load(ports[0], args)
        for name, extra in PROXIES.items():
            print(f"… {name}", flush=True)
            with proxy(ports, extra) as port:
                results[name] = run_load(port, args)
    return results


# -- cache lookup ----------------------------------------------------------------------------

class LinearScan:
    """The baseline: entries in a list, each compared attribute by attribute."""

    def __init__(self) -> None:
        self.entries: list[tuple[tuple[tuple[str, Any], ...], Any]] = []

    def store(self, refs: tuple[str, ...], values: Mapping[str, Any], verdict: Any) -> None:
        self.entries.append((tuple((n, values.get(n)) for n in refs), verdict))

    def lookup(self, values: Mapping[str, Any]) -> Any:
        for pairs, verdict in self.entries:
            if all(values.get(name) == value for name, value in pairs):
                return verdict
        return None


def request_values(i: int) -> dict[str, Any]:
    return {"request.url_path": f"/books/{i}", "destination.service.name": "ratings",
            "source.labels": {"version": "v1"}, "request.method": "GET",
            "request.headers": {"x-request-id": str(i), "x-user": "alice"},
            "request.time": dt.datetime.now(dt.timezone.utc)}


def per_lookup_us(lookup: Any, requests: list[dict[str, Any]], rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(rounds):
            for values in requests:
                lookup(values)
        best = min(best, (time.perf_counter() - t) / (rounds * len(requests)))
    return best * 1e6


def cache_lookup(sizes: tuple[int, ...]) -> list[tuple[int, float, float]]:
    from mixerhub.attributes.bag import Reference
    from mixerhub.proxy_filter.check_cache import CheckCache
    from mixerhub.verdict import Verdict

    refs = (Reference("request.url_path", None, True),
            Reference("destination.service.name", None, True),
            Reference("source.labels", "version", True))
    names = ("request.url_path", "destination.service.name", "source.labels")
    rows = []
    for size in sizes:
        cache, scan = CheckCache(max_entries=size), LinearScan()
        for i in range(size):
            values = request_values(i)
            verdict = Verdict(valid_duration=dt.timedelta(hours=1), valid_use_count=10**9,
                              references=refs)
            cache.store(verdict, values)
            scan.store(names, values, verdict)
        rng = random.Random(7)
        requests = [request_values(rng.randrange(size)) for _ in range(200)]
        rounds = max(1, 20_000 // (len(requests) * max(1, size // 100)))
        rows.append((size, per_lookup_us(cache.lookup, requests, 50),
                     per_lookup_us(scan.lookup, requests, rounds)))
    return rows


# -- report ----------------------------------------------------------------------------------

def print_http(results: dict[str, dict[str, float]]) -> None:
    direct = results["direct to the upstream"]
    print(f"\nHTTP GET through the proxy, {os.cpu_count()} cores, load ({LOAD[0]}) → [proxy →] "
          "upstream → load over loopback\n")
    print(f"{'path':<38}{'req/s':>9}{'÷ direct':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}")
    for name, r in results.items():
        print(f"{name:<38}{r['rps']:>9.0f}{r['rps'] / direct['rps']:>10.2f}{r['p50']:>9.2f}"
              f"{r['p99']:>9.2f}{r['n']:>10}")


def print_cache(rows: list[tuple[int, float, float]]) -> None:
    print("\nCheck cache lookup (a hit), µs per lookup, in process\n")
    print(f"{'entries':>8}{'shape hash':>13}{'linear scan':>13}{'scan ÷ hash':>13}")
    for size, ours, scan in rows:
        print(f"{size:>8}{ours:>13.2f}{scan:>13.2f}{scan / ours:>13.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--load", choices=("wrk", "python"),
                        default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--skip-http", action="store_true", help="only the cache lookup")
    parser.add_argument("--upstream-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_server:
        upstream_server(args.upstream_server)
        return 0
    LOAD[0] = args.load
    results = None if args.skip_http else http_scenarios(args)
    rows = cache_lookup((10, 1_000, 10_000))
    if results:
        print_http(results)
    print_cache(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
