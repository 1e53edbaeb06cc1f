"""Server time per Mixer Check, in process: what the hub adds to each call.

    .venv/bin/python bench/check_inprocess.py [--n 20000]

Covers: raw CheckRequest bytes → MixerService.check (parse, decode 17 attributes, policy,
encode the verdict with its references) → response bytes; no network, no gRPC. The
baseline, measured in the same run, is the same path with no rules (AllowAll). Scenarios:
examples/quickstart (four rules, five handlers; the request is one its listchecker rule
decides) with the decision cache on (every check after the first is a hit) and off (every
check evaluates the rules and calls the listchecker).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_rps import request_bytes  # noqa: E402

from mixerhub.app import Hub, Settings  # noqa: E402
from mixerhub.logs import configure  # noqa: E402

QUICKSTART = str(Path(__file__).resolve().parents[1] / "examples" / "quickstart")
SCENARIOS = [("no rules (baseline)", (), 0), ("quickstart, cache hit", (QUICKSTART,), 10_000),
             ("quickstart, cache off", (QUICKSTART,), 0)]


async def per_check(config: tuple[str, ...], cache: int, n: int) -> float:
    hub = Hub(Settings(grpc="127.0.0.1:0", http="127.0.0.1:0", config=config, watch=False,
                       cache_size=cache))
    await hub.start()
    raw = request_bytes()
    try:
        for _ in range(1000):
            await hub.mixer.check(raw)
        started = time.perf_counter()
        for _ in range(n):
            await hub.mixer.check(raw)
        return (time.perf_counter() - started) / n * 1e6
    finally:
        await hub.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    configure("error")
    results = {}
    for name, config, cache in SCENARIOS:
        print(f"… {name}: {args.n} checks", flush=True)
        results[name] = min(asyncio.run(per_check(config, cache, args.n)) for _ in range(3))
    base = results[SCENARIOS[0][0]]
    print("\nServer time per Check, in process (best of 3)\n")
    print(f"{'scenario':<26}{'µs/check':>10}{'checks/s':>11}{'÷ baseline':>12}")
    for name, us in results.items():
        print(f"{name:<26}{us:>10.1f}{1e6 / us:>11.0f}{us / base:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
