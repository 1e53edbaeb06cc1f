"""Mixer Check throughput and latency: the hub vs a bare grpc.aio server, same run.

    .venv/bin/python bench/check_rps.py [--seconds 10] [--concurrency 32]

Scenarios: the bare server; the hub with no rules; the hub serving examples/quickstart
(four rules, five handlers; the request is one its listchecker rule must decide) with its
decision cache on — every check after the first is a cache hit — and with the cache off
(--cache-size 0), where every check evaluates the rules and calls the adapter.

Both servers run as separate processes and get the same pre-encoded CheckRequest (17
attributes, global-dictionary and message words) from one load process (grpc.aio, N calls
in flight). The bare server answers every call with a fixed OK CheckResponse without
decoding it: it is the floor of Python gRPC on this machine. The figure covers: request
bytes sent by the client → response decoded by the client, over loopback. On 2 cores the
load process shares the CPU with the server, so absolute numbers are lower than a
dedicated load machine would show; the ratio is the point.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services._proc import free_port, spawn  # noqa: E402

CHECK = "/istio.mixer.v1.Mixer/Check"


def request_bytes() -> bytes:
    import datetime as dt
    import ipaddress

    from mixerhub.api.mixer.v1 import check_pb2
    from mixerhub.attributes.compression import Encoder

    encoder = Encoder()
    attrs = {
        "source.uid": "kubernetes://productpage-v1-7d4f.default",
        "source.ip": ipaddress.ip_address("10.12.0.7"), "source.namespace": "default",
        "destination.uid": "kubernetes://ratings-v1-55d8.default",
        "destination.service.host": "ratings.default.svc.cluster.local",
        "destination.service.name": "ratings", "source.labels": {"version": "v1"},
        "destination.namespace": "default", "destination.port": 9080,
        "request.path": "/ratings/0", "request.method": "GET", "request.scheme": "http",
        "request.host": "ratings:9080", "request.useragent": "python-requests/2.31",
        "request.headers": {":authority": "ratings:9080", ":path": "/ratings/0",
                            ":method": "GET", "x-user": "alice", "x-request-id": "b2f1"},
        "request.time": dt.datetime.now(dt.timezone.utc), "context.protocol": "http",
    }
    req = check_pb2.CheckRequest(attributes=encoder.encode(attrs),
                                 global_word_count=encoder.global_word_count)
    return req.SerializeToString()


def bare_server(port: int) -> None:
    """A grpc.aio server that answers Check with a constant OK, as cheaply as possible."""
    from mixerhub.api.mixer.v1 import check_pb2

    reply = check_pb2.CheckResponse()
    reply.precondition.status.code = 0
    reply.precondition.valid_duration.seconds = 60
    reply.precondition.valid_use_count = 10_000
    raw = reply.SerializeToString()

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return raw

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "istio.mixer.v1.Mixer", {"Check": grpc.unary_unary_rpc_method_handler(check)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    _run(main())


def _run(coro: object) -> None:
    try:
        import uvloop
        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


async def load(port: int, seconds: float, concurrency: int, payload: bytes) -> dict:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(CHECK)
        for _ in range(200):  # warm-up
            await call(payload, timeout=10)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                await call(payload, timeout=10)
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1e3, "p99": q[98] * 1e3,
            "n": len(latencies)}


def measure(name: str, cmd: list[str], port: int, args: argparse.Namespace) -> dict:
    print(f"… {name}: {args.seconds:.0f} s at {args.concurrency} in flight", flush=True)
    proc = spawn(cmd, port)
    try:
        result = asyncio.run(load(port, args.seconds, args.concurrency, request_bytes()))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    quickstart = str(Path(__file__).resolve().parents[1] / "examples" / "quickstart")
    results = {}
    for name, extra in SCENARIOS:
        port, http = free_port(), free_port()
        if extra is None:
            cmd = [sys.executable, __file__, "--bare-server", str(port)]
        else:
            cmd = [sys.executable, "-m", "mixerhub", "serve", "--grpc", f"127.0.0.1:{port}",
                   "--http", f"127.0.0.1:{http}", "--log-level", "warning",
                   *[a.replace("QUICKSTART", quickstart) for a in extra]]
        results[name] = measure(name, cmd, port, args)
    bare = results[SCENARIOS[0][0]]
    print(f"\nMixer Check, {os.cpu_count()} cores, client → server → client over loopback\n")
    print(f"{'server':<34}{'checks/s':>10}{'÷ bare':>8}{'p50 ms':>9}{'p99 ms':>9}{'calls':>9}")
    for name, r in results.items():
        print(f"{name:<34}{r['rps']:>10.0f}{r['rps'] / bare['rps']:>8.2f}{r['p50']:>9.2f}"
              f"{r['p99']:>9.2f}{r['n']:>9}")
    return 0


SCENARIOS: list[tuple[str, list[str] | None]] = [
    ("bare grpc.aio (constant OK)", None),
    ("mixerhub, no rules", []),
    ("mixerhub, quickstart, cache hit", ["--config", "QUICKSTART", "--no-watch"]),
    ("mixerhub, quickstart, cache off", ["--config", "QUICKSTART", "--no-watch",
                                         "--cache-size", "0"]),
]


if __name__ == "__main__":
    sys.exit(main())
