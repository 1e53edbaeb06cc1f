"""The pieces of a replay: memo keys, splitting files for worker processes, progress."""

from __future__ import annotations

import io
from pathlib import Path

from mixerhub.diff.memo import NO_MAP, Memo, compile_key
from mixerhub.diff.parallel import split
from mixerhub.diff.progress import Progress


def test_a_key_tells_absent_apart_from_present_values_and_kinds() -> None:
    key = compile_key([("a", None), ("m", "k"), ("n", None)])
    assert key({"a": "x", "m": {"k": "v"}, "n": 1}) == ("x", "v", (int, 1))
    assert key({}) == (None, NO_MAP, None)  # absent map ≠ map without the key
    assert key({"m": {}}) == (None, None, None)
    # An undeclared attribute keeps its JSON kind: 1, 1.0 and true are different values.
    assert len({key({"n": 1}), key({"n": 1.0}), key({"n": True})}) == 3
    whole = compile_key([("m", None)])
    assert whole({"m": {"b": "2", "a": "1"}}) == whole({"m": {"a": "1", "b": "2"}})


def test_the_memo_finds_an_entry_by_any_shape_it_knows() -> None:
    memo: Memo[str] = Memo()
    assert memo.store([("a", None)], {"a": "x", "b": "1"}, "A")
    assert memo.store([("a", None), ("b", None)], {"a": "y", "b": "2"}, "B")
    assert memo.lookup({"a": "x", "b": "9"}) == "A"  # b was not read for a = x
    assert memo.lookup({"a": "y", "b": "2"}) == "B"
    assert memo.lookup({"a": "y", "b": "3"}) is None
    assert (len(memo), memo.shapes) == (2, 2)
    full: Memo[str] = Memo(max_entries=1)
    assert full.store([("a", None)], {"a": "x"}, "A")
    assert not full.store([("a", None)], {"a": "y"}, "B")


def test_files_are_split_at_line_starts_into_parts_that_cover_them(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(b"x" * (i % 50) + b"\n" for i in range(1000)))
    second.write_bytes(b"".join(b"y" * (i % 30) + b"\n" for i in range(300)))
    for jobs in (2, 3, 5):
        parts = split([str(first), str(second)], jobs)
        assert len(parts) == jobs
        flat = [p for worker in parts for p in worker]
        for path in (first, second):
            mine = [p for p in flat if p.path == str(path)]
            data = path.read_bytes()
            assert mine[0].start == 0 and mine[-1].end == len(data)
            assert all(a.end == b.start for a, b in zip(mine, mine[1:]))
            assert all(p.start == 0 or data[p.start - 1:p.start] == b"\n" for p in mine)


def test_progress_is_a_plain_line_every_few_seconds_off_a_terminal() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(out, tty=False, clock=lambda: now[0])
    progress.start(1000)
    progress.update(100, 10)
    assert out.getvalue() == ""  # too soon
    now[0] = 5.0
    progress.update(400, 40_000)
    now[0] = 6.0
    progress.update(500, 50_000)
    assert out.getvalue() == "mixerhub diff: 40% (40,000 checks, 8,000/s)\n"


def test_progress_redraws_a_bar_on_a_terminal() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(out, tty=True, clock=lambda: now[0])
    progress.start(None)
    now[0] = 1.0
    progress.update(0, 1000)
    progress.finish()
    assert out.getvalue() == "\r1,000 checks, 1,000/s\r\x1b[K"
