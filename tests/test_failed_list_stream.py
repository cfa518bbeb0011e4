"""``gearmgr failed`` (the list, plain and ``--json``) streams: each record is written as it is
read from the SQLite file, so memory stays bounded by one record however many there are, and the
text is the same as when the whole list was built first."""

from __future__ import annotations

import argparse
import io
import json
import tracemalloc
from pathlib import Path

import pytest

from gearmgr.cli.failed import cmd_list
from gearmgr.failures.store import (
    ERROR_LIMIT,
    FailedJobs,
    Failure,
    RecordSettings,
    StoreError,
)


class Sink(io.TextIOBase):
    """A stdout that keeps nothing but a count (a pipe to another program)."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def fill(path: Path, n: int, error: str = "ValueError: boom", data: bytes = b"w") -> FailedJobs:
    store = FailedJobs(RecordSettings(str(path), keep=10**9, max=10**6))
    for i in range(n):
        store.add(
            Failure(
                function=f'f{i % 3}\u00e9\n"q"',
                handle=f"H:h:{i}".encode(),
                unique=f"u{i}".encode(),
                workload=data,
                reason="exception",
                error=f"{error} {i}\nline two\t\\",
            ),
            now=1_700_000_000.0 + i,
        )
    return store


def listed(store: FailedJobs, json_: bool, out: io.TextIOBase | None = None) -> str:
    out = out or io.StringIO()
    args = argparse.Namespace(function=None, since=None, json=json_)
    assert cmd_list(store, args, out) == 0  # type: ignore[arg-type]
    return out.getvalue() if isinstance(out, io.StringIO) else ""


def test_the_json_list_is_the_same_text_as_the_whole_array_dumped(tmp_path: Path) -> None:
    for n in (0, 1, 4):
        store = fill(tmp_path / f"{n}.db", n)
        before = json.dumps([r.as_json() for r in store.records()], indent=1) + "\n"
        got = listed(store, json_=True)
        assert got == before  # byte for byte what `gearmgr failed --json` printed before
        assert [r["id"] for r in json.loads(got)] == list(range(n, 0, -1))
        store.close()


def test_the_plain_list_is_unchanged(tmp_path: Path) -> None:
    store = fill(tmp_path / "f.db", 2)
    lines = listed(store, json_=False).splitlines()
    assert lines[0].split() == ["ID", "TIME", "FUNCTION", "UNIQUE", "REASON", "SIZE"]
    assert [line.split()[0] for line in lines[1:]] == ["2", "1"]
    assert lines[1].split()[-2:] == ["exception", "1"]
    empty = fill(tmp_path / "e.db", 0)
    assert listed(empty, json_=False).splitlines()[1:] == ["(no failed jobs recorded)"]


def test_listing_many_large_records_keeps_memory_bounded_by_one(tmp_path: Path) -> None:
    # 200 records, each with an error text at the 64 KiB limit: 13 MB of text in all
    rows = 200
    store = fill(tmp_path / "big.db", rows, error="x" * (ERROR_LIMIT - 40), data=b"w" * 65536)
    for json_ in (True, False):
        sink = Sink()
        tracemalloc.start()
        try:
            listed(store, json_, sink)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        if json_:
            assert sink.chars > rows * ERROR_LIMIT * 0.99  # every error text went out
        # the whole list in memory would take over 13 MB; a few records' worth is allowed
        assert peak < 8 * ERROR_LIMIT * 4, (json_, peak)
    store.close()


def test_a_file_that_cannot_be_read_is_said_before_anything_is_written(tmp_path: Path) -> None:
    store = FailedJobs(RecordSettings(str(tmp_path / "missing.db")), create=False)
    for json_ in (True, False):
        out = io.StringIO()
        with pytest.raises(StoreError, match=r"missing\.db: no such file"):
            listed(store, json_, out)
        assert out.getvalue() == ""  # no header or "[" before the error line
