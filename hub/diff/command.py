"""``mixerhub diff``: replay recorded checks through a base and a candidate config and
report which verdicts would change (docs/testing-policies.md, "Impact on recorded
traffic")."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence

from mixerhub.config.files import ConfigError
from mixerhub.config.loader import DEFAULT_NAMESPACE, LoadedConfig, load_config
from mixerhub.diff import parallel
from mixerhub.diff.progress import Progress
from mixerhub.diff.render import render
from mixerhub.diff.replay import ReplaySide, Subject, start_side, subject
from mixerhub.diff.replayer import Replayer
from mixerhub.diff.report import DiffReport, build
from mixerhub.diff.sources import FileSource, Source, SourceError, expand
from mixerhub.logs import configure, get_logger
from mixerhub.plugins import Plugins, load_plugins

#: Exit codes: a report was made; --fail-on-change and some verdict changed; cannot run.
OK, CHANGED, CANNOT_RUN = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class DiffOptions:
    base: tuple[str, ...]
    candidate: tuple[str, ...]
    traffic: tuple[str, ...]
    default_namespace: str = DEFAULT_NAMESPACE
    top: int = 10
    examples: int = 5
    jobs: int = 1  # worker processes for large files (parallel.py)
    memo: bool = True  # off: every line is evaluated (slow; for checking the memo)


def diff(options: DiffOptions, plugins: Plugins | None = None,
         progress: Progress | None = None) -> DiffReport:
    """Run a diff from outside any event loop: in worker processes when the traffic is
    large files and ``jobs`` > 1, else in this one. Raises ConfigError or SourceError."""
    plugins = plugins if plugins is not None else load_plugins()
    sources = [s for spec in options.traffic for s in expand(spec)]
    base = _load("base", options.base, plugins, options.default_namespace)
    candidate = _load("candidate", options.candidate, plugins, options.default_namespace)
    names = [s.name for s in sources]
    if not all(isinstance(s, FileSource) for s in sources) or \
            not parallel.usable(names, options.jobs):
        return asyncio.run(_one_process(options, sources, base, candidate, progress))
    started = time.perf_counter()
    job = parallel.Job(options.base, base, options.candidate, candidate, options.memo)
    tally = parallel.run(job, names, options.jobs, progress)
    report = build(tally, subject(options.base, base), subject(options.candidate, candidate),
                   names, options.top, options.examples)
    return _done(report, started)


async def run_diff(options: DiffOptions, plugins: Plugins | None = None,
                   progress: Progress | None = None) -> DiffReport:
    """The same in one process, from inside an event loop."""
    plugins = plugins if plugins is not None else load_plugins()
    sources = [s for spec in options.traffic for s in expand(spec)]
    base = _load("base", options.base, plugins, options.default_namespace)
    candidate = _load("candidate", options.candidate, plugins, options.default_namespace)
    return await _one_process(options, sources, base, candidate, progress)


async def _one_process(options: DiffOptions, sources: Sequence[Source], base: LoadedConfig,
                       candidate: LoadedConfig, progress: Progress | None) -> DiffReport:
    base_side = await start_side("base", options.base, base)
    try:
        cand_side = await start_side("candidate", options.candidate, candidate)
        try:
            return await replay(sources, base_side, cand_side, options, progress)
        finally:
            await cand_side.close()
    finally:
        await base_side.close()


def _load(label: str, paths: Sequence[str], plugins: Plugins, namespace: str
          ) -> LoadedConfig:
    try:
        return load_config(paths, plugins, namespace)
    except ConfigError as exc:
        raise ConfigError(f"{label} config does not load:\n{exc}") from None


async def replay(sources: Sequence[Source], base: ReplaySide, candidate: ReplaySide,
                 options: DiffOptions, progress: Progress | None = None) -> DiffReport:
    """Timed as DESIGN §13 says: from reading the traffic to the finished report."""
    started = time.perf_counter()
    replayer = Replayer(base, candidate, memo=options.memo)
    sizes = [await s.open() for s in sources]
    if progress is not None:
        progress.start(None if None in sizes else sum(s or 0 for s in sizes))
    try:
        await _feed(sources, sizes, replayer, progress)
    finally:
        for source in sources:
            await source.close()
        if progress is not None:
            progress.finish()
    report = build(replayer.tally(), Subject(base.paths, base.backends),
                   Subject(candidate.paths, candidate.backends), [s.name for s in sources],
                   options.top, options.examples)
    return _done(report, started)


def _done(report: DiffReport, started: float) -> DiffReport:
    report.seconds = time.perf_counter() - started
    get_logger("mixerhub.diff").info("diff done", checks=report.checks,
                                     changed=report.changed, broken=report.broken,
                                     groups=report.groups, seconds=round(report.seconds, 3))
    return report


async def _feed(sources: Sequence[Source], sizes: list[int | None], replayer: Replayer,
                progress: Progress | None) -> None:
    before, lines = 0, 0
    for source, size in zip(sources, sizes):
        async for batch in source.batches():
            await replayer.feed(batch)
            lines += len(batch.lines)
            if progress is not None:
                progress.update(before + batch.done, lines)
        before += size or 0


# ---- the command ---------------------------------------------------------------------------

def main(args: argparse.Namespace) -> int:
    configure("warning")
    options = DiffOptions(tuple(args.base), tuple(args.candidate), tuple(args.traffic),
                          args.default_namespace, args.top, args.examples,
                          args.jobs or os.cpu_count() or 1)
    try:
        report = diff(options, progress=Progress())
    except (ConfigError, SourceError) as exc:
        print(f"mixerhub diff: {exc}", file=sys.stderr)
        return CANNOT_RUN
    try:
        _write(report, args.json)
    except OSError as exc:
        print(f"mixerhub diff: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
        return CANNOT_RUN
    if report.checks == 0:
        print("mixerhub diff: no recorded check could be read", file=sys.stderr)
        return CANNOT_RUN
    return CHANGED if args.fail_on_change and report.changed else OK


def _write(report: DiffReport, json_target: str | None) -> None:
    if json_target:
        text = json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"
        if json_target == "-":
            sys.stdout.write(text)
            return
        with open(json_target, "w", encoding="utf-8") as file:
            file.write(text)
    sys.stdout.write(render(report))

