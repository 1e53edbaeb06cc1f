"""Replaying large files on several cores: the files are cut into parts at line starts,
one per worker process; each worker starts both configs and replays its part with its
own memo; the parent merges the tallies.

Workers are forked after the configs are loaded and before any event loop exists, so
they inherit the compiled configs instead of loading them again (POSIX only; elsewhere,
and for Kafka or standard input, the replay stays in one process).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

from mixerhub.config.loader import LoadedConfig
from mixerhub.diff.progress import Progress
from mixerhub.diff.replay import start_side
from mixerhub.diff.replayer import Replayer, Tally
from mixerhub.diff.sources import FileSource, line_start

#: Below this many bytes of traffic a second process costs more than it saves.
MIN_PARALLEL_BYTES = 16 << 20
_POLL = 0.2  # seconds between progress updates


@dataclasses.dataclass(frozen=True)
class Part:
    """Bytes ``[start, end)`` of a file (both at line starts)."""

    path: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Job:
    """What every worker replays against (inherited through fork, never pickled)."""

    base_paths: tuple[str, ...]
    base: LoadedConfig
    candidate_paths: tuple[str, ...]
    candidate: LoadedConfig
    memo: bool


_job: Job | None = None
_progress: Any = None  # shared array: bytes and lines done, per worker


def usable(paths: Sequence[str], jobs: int) -> bool:
    """Whether a parallel replay is worth it: several jobs, fork available, regular files
    big enough."""
    if jobs < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        return all(os.path.isfile(p) for p in paths) and \
            sum(os.path.getsize(p) for p in paths) >= MIN_PARALLEL_BYTES
    except OSError:
        return False


def split(paths: Sequence[str], jobs: int) -> list[list[Part]]:
    """``jobs`` lists of parts of about equal size, in file order."""
    sizes = [os.path.getsize(p) for p in paths]
    share = -(-sum(sizes) // jobs)
    cuts: list[list[Part]] = [[] for _ in range(jobs)]
    offset = 0  # over all files, as if concatenated
    for path, size in zip(paths, sizes):
        with open(path, "rb") as file:
            bounds = [0] + [line_start(file, k * share - offset)
                            for k in range(1, jobs) if offset < k * share < offset + size]
        bounds = sorted(set(bounds)) + [size]
        for start, end in zip(bounds, bounds[1:]):
            if end > start:
                cuts[min((offset + start) // share, jobs - 1)].append(Part(path, start, end))
        offset += size
    return [c for c in cuts if c]


def run(job: Job, paths: Sequence[str], jobs: int, progress: Progress | None) -> Tally:
    """Replay ``paths`` on ``jobs`` worker processes; the merged tally."""
    global _job, _progress
    parts = split(paths, jobs)
    context = multiprocessing.get_context("fork")
    _job, _progress = job, context.Array("q", 2 * len(parts), lock=False)
    if progress is not None:
        progress.start(sum(os.path.getsize(p) for p in paths))
    try:
        with concurrent.futures.ProcessPoolExecutor(len(parts), mp_context=context) as pool:
            futures = [pool.submit(_work, i, part) for i, part in enumerate(parts)]
            _wait(futures, progress)
            tallies = [f.result() for f in futures]
    finally:
        _job = _progress = None
        if progress is not None:
            progress.finish()
    merged = tallies[0]
    for tally in tallies[1:]:
        merged.merge(tally)
    return merged


def _wait(futures: list[concurrent.futures.Future[Tally]], progress: Progress | None) -> None:
    pending = set(futures)
    while pending:
        _, pending = concurrent.futures.wait(pending, timeout=_POLL)
        if progress is not None:
            shared = list(_progress)
            progress.update(sum(shared[0::2]), sum(shared[1::2]))


def _work(index: int, parts: list[Part]) -> Tally:
    assert _job is not None
    return asyncio.run(_replay(_job, index, parts))


async def _replay(job: Job, index: int, parts: list[Part]) -> Tally:
    base = await start_side("base", job.base_paths, job.base)
    try:
        candidate = await start_side("candidate", job.candidate_paths, job.candidate)
        try:
            replayer = Replayer(base, candidate, memo=job.memo)
            done_before, lines = 0, 0
            for part in parts:
                source = FileSource(part.path, part.start, part.end)
                await source.open()
                try:
                    async for batch in source.batches():
                        await replayer.feed(batch)
                        lines += len(batch.lines)
                        _progress[2 * index] = done_before + batch.done
                        _progress[2 * index + 1] = lines
                finally:
                    await source.close()
                done_before += part.end - part.start
            return replayer.tally()
        finally:
            await candidate.close()
    finally:
        await base.close()
