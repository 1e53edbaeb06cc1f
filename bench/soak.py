"""Soak a hub: checks at a fixed rate for a chosen time, a line of figures every N seconds.

    # start a hub of its own (examples/quickstart), 200 checks/s over gRPC for 10 minutes
    .venv/bin/python bench/soak.py --spawn --rate 200 --duration 600
    # a hub already running: Mixer Check over gRPC and POST /v1/check, watch its process
    .venv/bin/python bench/soak.py --grpc 127.0.0.1:9091 --http 127.0.0.1:9093 \\
        --target both --rate 100 --duration 3600 --pid "$(pgrep -f 'mixerhub serve')"
    # mTLS: the hub's CA and a client certificate (mixerhub certs dev)
    .venv/bin/python bench/soak.py --spawn --tls-dir certs/ --rate 100 --duration 300

Each line: elapsed seconds, checks sent and how they ended (ok, denied, shed = refused
as overloaded, error), the rate achieved, latency percentiles of that interval, and the
hub's resident memory and open file descriptors (from /proc, so the hub must run on this
machine: ``--spawn`` or ``--pid``). The load is open-loop: check *i* is due at
``start + i / rate`` whether or not earlier ones have answered, and its latency counts
from when it was due, so a stalling hub shows as latency, not as a lower send rate
(``--max-inflight`` caps the checks outstanding; one due past the cap waits and is counted
in ``late``). ``--distinct N`` spreads requests over N paths, so the decision cache sees
N keys. The last line sums up the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Tally:
    """Outcomes and latencies of one interval (or of the whole run)."""

    ok: int = 0
    denied: int = 0
    shed: int = 0
    error: int = 0
    late: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)

    @property
    def count(self) -> int:
        return self.ok + self.denied + self.shed + self.error

    def add(self, outcome: str, seconds: float) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.latencies.append(seconds)

    def merge(self, other: Tally) -> None:
        for name in ("ok", "denied", "shed", "error", "late"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies.extend(other.latencies)

    def percentiles(self) -> str:
        if not self.latencies:
            return "p50 -  p90 -  p99 -  max -"
        values = sorted(self.latencies)

        def at(q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))] * 1000

        return (f"p50 {at(0.5):.2f}  p90 {at(0.9):.2f}  p99 {at(0.99):.2f}  "
                f"max {values[-1] * 1000:.2f} ms")


class ProcessWatch:
    """Resident memory and open files of one process, from /proc."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.rss: list[float] = []
        self.fds: list[int] = []

    def sample(self) -> str:
        if self.pid is None:
            return "rss -  fds -"
        try:
            rss = _vm_rss(self.pid)
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return "rss ?  fds ? (process gone)"
        self.rss.append(rss)
        self.fds.append(fds)
        return f"rss {rss:.1f} MiB  fds {fds}"

    def summary(self) -> str:
        if not self.rss:
            return "process not watched"
        return (f"rss {self.rss[0]:.1f} → {self.rss[-1]:.1f} MiB (max {max(self.rss):.1f}); "
                f"fds {self.fds[0]} → {self.fds[-1]} (max {max(self.fds)})")


def _vm_rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmRSS")


class Caller:
    """One check by Mixer gRPC or by POST /v1/check; returns its outcome's name."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grpc_client: Any = None
        self.session: Any = None
        self.http_url = f"{'https' if args.tls_dir else 'http'}://{args.http}/v1/check"
        self.ssl: ssl.SSLContext | bool = False

    async def start(self) -> None:
        import aiohttp
        import grpc

        from mixerhub.proxy_filter.mixer_client import CHANNEL_OPTIONS, MixerClient

        tls = Path(self.args.tls_dir) if self.args.tls_dir else None
        if self.args.target in ("grpc", "both"):
            channel = None
            if tls is not None:
                creds = grpc.ssl_channel_credentials(
                    (tls / "ca.pem").read_bytes(), (tls / f"{self.args.client}-key.pem")
                    .read_bytes(), (tls / f"{self.args.client}.pem").read_bytes())
                channel = grpc.aio.secure_channel(self.args.grpc, creds, options=CHANNEL_OPTIONS)
            self.grpc_client = MixerClient(self.args.grpc, channel=channel, timeout=5)
        if self.args.target in ("http", "both"):
            if tls is not None:
                context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
                context.load_cert_chain(tls / f"{self.args.client}.pem",
                                        tls / f"{self.args.client}-key.pem")
                self.ssl = context
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.args.max_inflight),
                timeout=aiohttp.ClientTimeout(total=5))

    async def close(self) -> None:
        if self.grpc_client is not None:
            await self.grpc_client.close()
        if self.session is not None:
            await self.session.close()

    async def check(self, i: int) -> str:
        attributes = {"request.path": f"/soak/{i % self.args.distinct}",
                      "request.method": "GET", "destination.service.name": "ratings",
                      "source.labels": {"version": "v1"}, "context.protocol": "http"}
        use_grpc = self.session is None or (self.grpc_client is not None and i % 2 == 0)
        try:
            if use_grpc:
                result = await self.grpc_client.check(attributes)
                return "ok" if result.verdict.ok else "denied"
            return await self._http(attributes)
        except Exception as exc:  # noqa: BLE001 - every failure is a figure here
            return "shed" if "overloaded" in str(exc) else "error"

    async def _http(self, attributes: dict[str, Any]) -> str:
        # "quotas": {} names none, as the gRPC checks do (no default quota is charged).
        payload = {"attributes": attributes, "quotas": {}}
        async with self.session.post(self.http_url, json=payload, ssl=self.ssl) as response:
            body = await response.json()
            if response.status == 503 and body.get("code") == "overloaded":
                return "shed"
            if response.status != 200:
                return "error"
            return "ok" if body["status"]["code"] == 0 else "denied"


async def soak(args: argparse.Namespace, pid: int | None) -> int:
    caller, watch = Caller(args), ProcessWatch(pid)
    await caller.start()
    total, interval = Tally(), Tally()
    inflight = asyncio.Semaphore(args.max_inflight)
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        try:
            outcome = await caller.check(i)
            interval.add(outcome, loop.time() - due)
        finally:
            inflight.release()

    print(f"soak: {args.target} checks at {args.rate}/s for {args.duration:.0f} s, "
          f"a line every {args.interval:.0f} s; {watch.sample()}", flush=True)
    i, next_line = 0, start + args.interval
    while loop.time() - start < args.duration:
        due = start + i / args.rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        if inflight.locked():
            interval.late += 1
        await inflight.acquire()
        task = asyncio.create_task(one(i, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
        if loop.time() >= next_line:
            _line(loop.time() - start, interval, args.interval, watch)
            total.merge(interval)
            interval, next_line = Tally(), next_line + args.interval
    await asyncio.gather(*pending)
    total.merge(interval)
    elapsed = loop.time() - start
    print(f"total {elapsed:.0f} s: {total.count} checks ({total.count / elapsed:.0f}/s): "
          f"ok {total.ok}, denied {total.denied}, shed {total.shed}, error {total.error}, "
          f"late {total.late}; {total.percentiles()}; {watch.summary()}", flush=True)
    await caller.close()
    return 1 if total.error else 0


def _line(elapsed: float, tally: Tally, seconds: float, watch: ProcessWatch) -> None:
    print(f"{elapsed:7.0f} s  sent {tally.count:6d} ({tally.count / seconds:6.0f}/s)  "
          f"ok {tally.ok}  denied {tally.denied}  shed {tally.shed}  error {tally.error}  "
          f"late {tally.late}  {tally.percentiles()}  {watch.sample()}", flush=True)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def spawn(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """A `mixerhub serve` of the soak's own, on free ports."""
    import urllib.request

    args.grpc, args.http = free_address(), free_address()
    admin = free_address()
    command = [sys.executable, "-m", "mixerhub", "serve", "--grpc", args.grpc, "--http",
               args.http, "--admin", admin, "--config", args.config, "--log-level", "warning"]
    if args.tls_dir:
        tls = Path(args.tls_dir)
        command += ["--tls-cert", str(tls / "server.pem"), "--tls-key",
                    str(tls / "server-key.pem"), "--tls-client-ca", str(tls / "ca.pem")]
    command += args.serve_arg
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://{admin}/readyz", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("soak: the spawned hub did not become ready") from None
            time.sleep(0.1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("grpc", "http", "both"), default="grpc")
    parser.add_argument("--grpc", default="127.0.0.1:9091", metavar="HOST:PORT")
    parser.add_argument("--http", default="127.0.0.1:9093", metavar="HOST:PORT")
    parser.add_argument("--rate", type=float, default=200.0, help="checks per second")
    parser.add_argument("--duration", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between lines")
    parser.add_argument("--distinct", type=int, default=100, metavar="N",
                        help="distinct request paths (decision-cache keys)")
    parser.add_argument("--max-inflight", type=int, default=256, metavar="N")
    parser.add_argument("--pid", type=int, help="the hub's process id, to watch")
    parser.add_argument("--spawn", action="store_true", help="start a hub of our own")
    parser.add_argument("--config", default=str(ROOT / "examples" / "quickstart"),
                        help="with --spawn: its config")
    parser.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                        help="with --spawn: one more `mixerhub serve` argument (repeatable), "
                             "e.g. --serve-arg=--max-inflight-checks=500")
    parser.add_argument("--tls-dir", metavar="DIR",
                        help="a `mixerhub certs dev` folder: ca.pem and a client certificate")
    parser.add_argument("--client", default="proxy", metavar="NAME",
                        help="with --tls-dir: the client certificate NAME.pem")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    proc = spawn(args) if args.spawn else None
    try:
        pid = proc.pid if proc is not None else args.pid
        return asyncio.run(soak(args, pid))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
