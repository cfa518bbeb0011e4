"""Unit tests of failed and poison jobs: the SQLite store (real files, real forked writers),
the death counts, the shared poison list and the worker's view of it, the job in hand in the
scoreboard, and the supervisor's handling of a death (no server, no worker)."""

from __future__ import annotations

import logging
import os
import sqlite3
import traceback
from pathlib import Path

import pytest

from gearmgr import scoreboard as sb
from gearmgr.config import config_from_dict
from gearmgr.failures.deaths import DeathCounts
from gearmgr.failures.quarantine import QuarantineBoard, Quarantined, View, job_key
from gearmgr.failures.store import (
    ERROR_LIMIT,
    NAME_LIMIT,
    WORKLOAD_LIMIT,
    FailedJobs,
    Failure,
    RecordSettings,
    StoreError,
)
from gearmgr.supervisor.lifecycle import ExitReason, Slot
from gearmgr.supervisor.plan import make_plan
from gearmgr.supervisor.poison import PoisonWatch


def failure(n: int = 0, function: str = "f", data: bytes = b"payload", **kw) -> Failure:
    fields = dict(
        function=function,
        handle=f"H:host:{n}".encode(),
        unique=f"u{n}".encode(),
        workload=data,
        reason="exception",
        error=f"ValueError: {n}",
    )
    fields.update(kw)
    return Failure(**fields)  # type: ignore[arg-type]


def store_at(tmp_path: Path, **kw) -> FailedJobs:
    return FailedJobs(RecordSettings(str(tmp_path / "failed.db"), **kw))


# --- the store --------------------------------------------------------------------------------


def test_a_record_keeps_everything_and_lists_newest_first(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.add(failure(1, data=b"\x00\xff binary"), now=1000.0)
    second = store.add(failure(2, function="g", reason="timeout"), now=1001.0)
    assert [r.id for r in store.records()] == [second, first]
    record = store.get(first)
    assert record is not None and record.workload == b"\x00\xff binary"
    assert (record.function, record.handle, record.unique) == ("f", "H:host:1", "u1")
    assert (record.reason, record.error, record.size, record.retried) == (
        "exception", "ValueError: 1", 9, 0
    )  # fmt: skip
    assert [r.id for r in store.records(function="g")] == [second]
    assert store.records()[0].workload is None  # a list does not read workloads
    store.mark_retried(first)
    assert store.get(first).retried == 1  # type: ignore[union-attr]
    assert store.get(999) is None
    mode = sqlite3.connect(tmp_path / "failed.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_workload_over_1mib_is_cut_and_marked(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    big = bytes(range(256)) * (WORKLOAD_LIMIT // 256 + 10)
    record = store.get(store.add(failure(data=big, error="x" * (ERROR_LIMIT + 50))))
    assert record is not None and record.cut and record.size == len(big)
    assert record.workload == big[:WORKLOAD_LIMIT]
    assert record.error.startswith("[50 characters cut]\n") and record.error.endswith("x")
    whole = store.get(store.add(failure(data=big[:WORKLOAD_LIMIT])))
    assert whole is not None and not whole.cut and whole.workload == big[:WORKLOAD_LIMIT]


def test_an_error_about_a_file_name_that_is_not_utf8_is_recorded(tmp_path: Path) -> None:
    # A name from os.listdir holds lone surrogates in Python (os.fsdecode), which SQLite cannot
    # take: the record keeps them escaped rather than being lost.
    name = os.fsdecode(b"\xff.csv")
    try:
        raise ValueError(f"bad row in {name}")
    except ValueError as exc:
        text = "".join(traceback.format_exception(exc))
    store = store_at(tmp_path)
    record = store.get(store.add(failure(error=text)))
    assert record is not None and "\\udcff.csv" in record.error
    assert record.error.startswith("Traceback") and "ValueError" in record.error


def test_a_huge_binary_handle_or_unique_id_is_cut_in_the_record(tmp_path: Path) -> None:
    # gearmand's are at most 64 bytes; a hostile server's may fill a 64 MiB packet.
    store = store_at(tmp_path)
    huge = b"\xff" * (8 << 20)
    record = store.get(store.add(failure(handle=huge, unique=huge)))
    assert record is not None
    assert record.handle == record.unique == "\\xff" * NAME_LIMIT + " [cut]"


def test_retention_keeps_the_newest_max_and_drops_what_is_older_than_keep(tmp_path: Path) -> None:
    store = store_at(tmp_path, keep=100.0, max=5)
    ids = [store.add(failure(i), now=1000.0 + i) for i in range(8)]
    assert [r.id for r in store.records()] == ids[::-1][:5]
    store.add(failure(9), now=1105.5)  # the records of 1000.0..1005.0 are older than 100 s
    assert [r.unique for r in store.records()] == ["u9", "u7", "u6"]
    store.prune(now=1300.0)
    assert store.count() == 0


def test_purge_by_function_and_age(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    import time

    now = time.time()
    store.add(failure(1, function="f"), now=now - 7200)
    store.add(failure(2, function="g"), now=now - 7200)
    store.add(failure(3, function="f"), now=now)
    assert store.purge(older_than=3600, function="f") == 1
    assert sorted(r.unique for r in store.records()) == ["u2", "u3"]
    assert store.purge(function="g") == 1
    assert store.purge() == 1 and store.count() == 0


def test_the_commands_never_create_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none" / "failed.db"
    store = FailedJobs(RecordSettings(str(path)), create=False)
    with pytest.raises(StoreError, match=r"failed\.db: no such file"):
        store.records()
    assert not path.parent.exists()
    with pytest.raises(StoreError, match=r"failed_jobs .*failed\.db: unable to open"):
        FailedJobs(RecordSettings(str(path))).add(failure())


def test_many_forked_writers_lose_no_record(tmp_path: Path) -> None:
    store_at(tmp_path).prune()  # the file exists before the forks, as the supervisor makes it
    writers, each = 8, 150
    pids = []
    for w in range(writers):
        pid = os.fork()
        if pid == 0:  # a writer process, with its own connection
            code = 1
            try:
                mine = store_at(tmp_path)
                for i in range(each):
                    mine.add(failure(w * 1000 + i))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    uniques = {r.unique for r in store_at(tmp_path).records()}
    assert uniques == {f"u{w * 1000 + i}" for w in range(writers) for i in range(each)}


# --- death counts -------------------------------------------------------------------------------


def test_deaths_are_counted_per_job_and_published_for_functions_that_quarantine() -> None:
    counts = DeathCounts()
    assert counts.died("f", b"u1", 3, 0.0) == 1
    assert counts.died("f", b"u1", 3, 1.0) == 2
    assert counts.died("g", b"u1", 3, 1.0) == 1  # another function's job
    assert counts.died("h", b"u9", 0, 1.0) == 1  # poison_after 0: counted, never published
    assert counts.quarantined() == 0
    assert counts.died("f", b"u1", 3, 2.0) == 3
    assert counts.quarantined() == 1
    assert counts.entries() == [("g", b"u1", 1, 3), ("f", b"u1", 3, 3)]


def test_death_counts_are_bounded_and_forgotten() -> None:
    counts = DeathCounts(limit=3, forget_after=100.0)
    for i in range(5):
        counts.died("f", f"u{i}".encode(), 2, float(i))
    assert [k for _, k, _, _ in counts.entries()] == [b"u2", b"u3", b"u4"]
    assert not counts.expire(50.0)
    assert counts.expire(103.5)  # u2 and u3 died more than 100 s before
    assert [k for _, k, _, _ in counts.entries()] == [b"u4"]


# --- the shared list and a worker's view --------------------------------------------------------


def ok(job: object) -> str:
    return "ran"


def test_a_worker_runs_what_is_not_published_and_refuses_what_reached_poison_after() -> None:
    board = QuarantineBoard(capacity=8)
    view = View(board)
    assert view.screen("f", b"H:1", b"u1", ok) is ok
    board.begin()
    board.write([("f", b"u1", 3, 3), ("f", b"u2", 2, 3), ("f", b"H:3", 3, 3)])
    board.end()
    assert view.gen[0] != view.seen  # what the job path tests: screen() is called
    with pytest.raises(Quarantined, match=r"^killed 3 worker processes$"):
        view.screen("f", b"H:1", b"u1", ok)(None)
    assert view.screen("f", b"H:2", b"u2", ok) is ok  # 2 deaths of 3
    assert view.screen("g", b"H:1", b"u1", ok) is ok  # another function's job
    assert view.screen("f", b"H:9", b"u9", ok) is ok  # not published
    with pytest.raises(Quarantined):  # keyed by handle when there is no unique id
        view.screen("f", b"H:3", b"", ok)(None)


def test_deaths_not_reaped_yet_are_counted_from_the_scoreboard() -> None:
    board = QuarantineBoard(capacity=8)
    board.begin()
    board.write([("f", b"u7", 1, 3)])  # the supervisor reaped one death
    board.end()
    unreaped = {b"H:7": 1}  # another slot still shows the job busy: its process died too
    view = View(board, lambda h, u: unreaped[h])
    assert view.screen("f", b"H:7", b"u7", ok) is ok  # 2 deaths of 3: run it
    unreaped[b"H:7"] = 2
    with pytest.raises(Quarantined, match="killed 3 worker processes"):
        view.screen("f", b"H:7", b"u7", ok)(None)


def test_a_list_being_written_is_read_again_and_a_stuck_writer_is_not_waited_for() -> None:
    board = QuarantineBoard(capacity=8)
    board.begin()
    board.write([("f", b"u1", 5, 3)])
    view = View(board)
    assert view.deaths("f", b"H:1", b"u1") == 0  # never finished: the job runs
    board.end()
    assert view.deaths("f", b"H:1", b"u1") == 5
    assert job_key(b"H:1", b"") == b"H:1" and job_key(b"H:1", b"u") == b"u"


# --- the job in hand ----------------------------------------------------------------------------


def test_the_job_in_hand_is_published_in_the_slot() -> None:
    board = sb.Scoreboard(4)
    writer = board.writer(2, ["a", "b"])
    assert board.in_hand(2) is None
    writer.job_store(1)(b"H:host:42", b"unique-42")
    assert board.in_hand(2) == (1, b"H:host:42", b"unique-42")
    assert board.busy_with(b"H:host:42", b"unique-42", exclude=0) == 0  # not busy
    board.words[board.base(2) + sb.STATE] = sb.BUSY
    assert board.busy_with(b"H:host:42", b"unique-42", exclude=0) == 1
    assert board.busy_with(b"H:host:42", b"unique-42", exclude=2) == 0
    writer.job_store(0)(b"H:x:" + b"9" * 300, b"")  # cut at HAND_BYTES
    assert board.in_hand(2) == (0, (b"H:x:" + b"9" * 300)[: sb.HAND_BYTES], b"")
    board.drop_in_hand(2)
    assert board.in_hand(2) is None


# --- the supervisor's side ----------------------------------------------------------------------


def dying_slot(board: sb.Scoreboard, pid: int = 100) -> Slot:
    plan = make_plan(config_from_dict({}), ["a"])
    slot = Slot(plan[0], 0)
    slot.spawned(pid, 0.0)
    board.writer(0, ["a"]).job_store(0)(b"H:host:1", b"job-1")
    board.words[board.base(0) + sb.STATE] = sb.BUSY
    return slot


def test_the_supervisor_logs_each_death_and_quarantines_at_poison_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = sb.Scoreboard(4)
    watch = PoisonWatch(board, QuarantineBoard(capacity=8))
    caplog.set_level(logging.WARNING, "gearmgr.supervisor")
    for pid in (100, 101):
        watch.gone(dying_slot(board, pid), ["a"], True, lambda f: 2, 1.0)
        assert board.in_hand(0) is None  # dropped in the same write as the count
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "process 100 (a#0) died running a job of a (unique 'job-1', handle 'H:host:1'):"
        " 1 death of 2 before quarantine"
    )
    assert lines[-1].startswith("job of a (unique 'job-1', handle 'H:host:1') quarantined:")
    stats = watch.stats([], None)
    assert stats.deaths == {"a": 2} and stats.quarantined == {"a": 1}
    assert stats.in_quarantine == 1
    assert View(watch.board).deaths("a", b"H:host:1", b"job-1") == 2


def test_a_stop_the_supervisor_asked_for_is_not_the_jobs_death() -> None:
    board = sb.Scoreboard(4)
    watch = PoisonWatch(board, QuarantineBoard(capacity=8))
    slot = dying_slot(board)
    slot.stop(0.0, 30.0, ExitReason.STOP)
    watch.gone(slot, ["a"], True, lambda f: 1, 1.0)
    assert watch.stats([], None).deaths == {} and board.in_hand(0) is None
    timed_out = dying_slot(board)
    timed_out.stop(0.0, 0.0, ExitReason.TIMEOUT, force=True)  # the timeout backstop's kill
    watch.gone(timed_out, ["a"], True, lambda f: 1, 1.0)
    assert watch.stats([], None).quarantined == {"a": 1}
