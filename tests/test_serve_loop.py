"""The loop of a busy worker in C (gearmgr/_serve.c, gearmgr/worker/serving.py) against a real
gearmand: jobs that follow one another run there, and everything the Python path does still
happens: results of every type, failures, counters, limits, stops, titles, signals.

A function records which Python frame called it: jobs run by the C loop are called from
``Serving._serve`` (the frame that called into C), the others from ``Worker._job``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gearmgr import logs
from gearmgr import scoreboard as sb
from gearmgr.errors import ExitCode
from gearmgr.wire.aclient import AsyncClient
from gearmgr.wire.client import Client, JobFailed
from gearmgr.worker.limits import current_rss
from gearmgr.worker.loop import Worker
from tests.support import Gearmand, function_status, wait_for

speedups = pytest.importorskip(
    "gearmgr._speedups", reason="the C extension is not built (no compiler or Python headers)"
)


@pytest.fixture(autouse=True)
def _keep_the_log_label() -> Iterator[None]:
    """A Worker's run() names the process in the log (logs.set_label): these tests run it in
    the test process, whose label the other tests expect back."""
    label = logs._label.label
    yield
    logs.set_label(label)


def caller() -> str:
    """The name of the Python function that called the worker function calling this."""
    return sys._getframe(2).f_code.co_name


def queue(gearmand: Gearmand, function: str, count: int) -> list[str]:
    """``count`` background jobs queued for ``function`` (data "0".."count-1")."""
    with Client([gearmand.address]) as client:
        return [client.submit(function, str(i), background=True) for i in range(count)]


@contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join(10)


def queued(gearmand: Gearmand, function: str) -> int:
    return function_status(gearmand.port).get(function, (0, 0, 0))[0]


def test_jobs_in_a_row_run_in_c_and_are_counted_as_in_python(gearmand: Gearmand):
    seen: list[tuple[str, str, str, str, str]] = []

    def record(job: Any) -> None:
        seen.append((caller(), job.handle, job.unique, job.text, job.function))

    handles = queue(gearmand, "rec", 200)
    board = sb.Scoreboard(capacity=1)
    worker = Worker([gearmand.address], {"rec": record}, scoreboard=board)
    with running(worker):
        wait_for(lambda: len(seen) == 200 and worker.jobs == 200, 20, what="200 jobs")
        wait_for(lambda: board.read(0, functions=1).state == "idle", 5, what="idle")
    in_c = sum(1 for who, *_ in seen if who == "_serve")
    assert in_c >= 190, f"only {in_c} of 200 jobs ran in the C loop"
    assert [h for _, h, *_ in seen] == handles
    assert [d for *_, d, _ in seen] == [str(i) for i in range(200)]
    assert {(f, bool(u)) for *_, u, _, f in seen} == {("rec", True)}
    view = board.read(0, functions=1)
    stats = view.function_stats[0]
    assert (view.jobs_done, view.jobs_failed, stats.done, stats.failed) == (200, 0, 200, 0)
    assert sum(stats.buckets) == 200 and stats.duration_sum > 0
    assert queued(gearmand, "rec") == 0


class Digest(bytes):
    """A bytes subclass (numpy.bytes_ is one): its bytes are the result, as for bytes."""


def answer(job: Any) -> Any:
    kind = job.text.split(":")[0]
    if kind == "fail":
        raise ValueError(f"no {job.text}")
    if kind == "status":
        job.status(1, 2)
        job.send_data(b"partial")
    return {
        "bytes": b"b-" + job.data,
        "str": "é-" + job.text,
        "none": None,
        "dict": {"n": job.text},
        "bytearray": bytearray(b"ba"),
        "status": b"done",
        "subclass": Digest(b"sub-" + job.data),
    }[kind]


def test_every_kind_of_result_and_failure_reaches_the_client(gearmand: Gearmand):
    kinds = ["bytes", "str", "none", "dict", "bytearray", "fail", "status", "subclass"]
    calls: list[str] = []

    def handler(job: Any) -> Any:
        calls.append(caller())
        time.sleep(0.001)  # the submits pile up behind the first jobs
        return answer(job)

    async def submit_all() -> list[Any]:
        async with AsyncClient([gearmand.address], timeout=30) as client:
            updates: list[tuple[int, int]] = []
            data: list[bytes] = []
            jobs = [
                client.submit(
                    "kinds",
                    f"{kind}:{i}",
                    on_status=lambda n, d: updates.append((n, d)),
                    on_data=data.append,
                )
                for i in range(20)
                for kind in kinds
            ]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            return [results, updates, data]

    worker = Worker([gearmand.address], {"kinds": handler})
    with running(worker):
        wait_for(lambda: worker.conns[0].serve is not None, 10, what="connected")
        results, updates, data = asyncio.run(submit_all())
    expected: list[Any] = []
    for i in range(20):
        expected += [
            f"b-bytes:{i}".encode(),
            f"é-str:{i}".encode(),
            b"",
            f'{{"n": "dict:{i}"}}'.encode(),
            b"ba",
            JobFailed,
            b"done",
            f"sub-subclass:{i}".encode(),
        ]
    for got, want in zip(results, expected, strict=True):
        if want is JobFailed:
            assert isinstance(got, JobFailed) and "ValueError" in str(got)
        else:
            assert got == want
    assert updates == [(1, 2)] * 20 and data == [b"partial"] * 20
    assert calls.count("_serve") >= 80, calls  # most of the 160 ran in C
    assert worker.jobs == 160


def test_max_jobs_leaves_after_exactly_that_many(gearmand: Gearmand):
    calls: list[str] = []
    queue(gearmand, "limited", 100)
    worker = Worker(
        [gearmand.address], {"limited": lambda job: calls.append(caller())}, max_jobs=40
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert (worker.jobs, len(calls), worker.leaving) == (40, 40, sb.REASON_MAX_JOBS)
    assert calls.count("_serve") >= 35
    wait_for(lambda: queued(gearmand, "limited") == 60, 10, what="60 jobs left queued")


def test_max_lifetime_is_kept_while_busy(gearmand: Gearmand):
    queue(gearmand, "aging", 3000)
    worker = Worker([gearmand.address], {"aging": lambda job: time.sleep(0.001)}, max_lifetime=0.5)
    started = time.monotonic()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and worker.leaving == sb.REASON_MAX_LIFETIME
    assert time.monotonic() - started < 5
    assert 0 < worker.jobs < 3000
    wait_for(lambda: queued(gearmand, "aging") == 3000 - worker.jobs, 10, what="the rest queued")


def test_a_stop_in_a_busy_stretch_ends_the_job_and_takes_no_more(gearmand: Gearmand):
    calls: list[str] = []

    def handler(job: Any) -> None:
        calls.append(caller())
        if len(calls) == 30:
            worker.stop()

    queue(gearmand, "stopper", 100)
    worker = Worker([gearmand.address], {"stopper": handler})
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert worker.jobs == 30 and calls.count("_serve") >= 25
    wait_for(lambda: queued(gearmand, "stopper") == 70, 10, what="70 jobs left queued")


def test_a_job_that_exits_ends_the_process_after_its_reply(gearmand: Gearmand):
    calls: list[str] = []

    def handler(job: Any) -> None:
        calls.append(caller())
        if len(calls) == 12:
            sys.exit(3)

    queue(gearmand, "quitter", 50)
    board = sb.Scoreboard(capacity=1)
    worker = Worker([gearmand.address], {"quitter": handler}, scoreboard=board)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and worker.leaving == sb.REASON_JOB_EXIT
    assert calls[11] == "_serve"  # it ran in C; Python failed it and left
    view = board.read(0, functions=1)
    assert (view.jobs_done, view.jobs_failed) == (12, 1)
    wait_for(lambda: queued(gearmand, "quitter") == 38, 10, what="38 jobs left queued")


def test_the_title_counts_jobs_during_a_long_busy_stretch(gearmand: Gearmand):
    titles: list[str] = []
    queue(gearmand, "slowish", 500)
    worker = Worker(
        [gearmand.address], {"slowish": lambda job: time.sleep(0.004)}, title=titles.append
    )
    with running(worker):
        wait_for(lambda: worker.jobs == 500, 30, what="500 jobs")
    busy = [int(t.split("jobs=")[1].split()[0]) for t in titles if t.endswith("busy]")]
    assert any(0 < n < 500 for n in busy[1:]), titles  # refreshed while the jobs ran in C


def test_a_change_of_the_quarantine_list_hands_the_next_job_to_python(gearmand: Gearmand):
    calls: list[str] = []

    def handler(job: Any) -> None:
        calls.append(caller())
        if len(calls) == 20:  # the supervisor publishes a new list (its generation word moves)
            worker._quarantine.gen[0] += 2

    queue(gearmand, "screened", 40)
    worker = Worker([gearmand.address], {"screened": handler})
    with running(worker):
        wait_for(lambda: len(calls) == 40, 20, what="40 jobs")
    assert calls[19] == "_serve" and calls[20] == "_job"  # screened by Python from then on


WORKER_SCRIPT = """
import sys, time
from gearmgr.worker.loop import Worker

out = open(sys.argv[2], "a", buffering=1)

def work(job):
    time.sleep(0.002)
    out.write(job.text + "\\n")

sys.exit(Worker([sys.argv[1]], {"termed": work}).run())
"""


def test_term_in_a_busy_stretch_stops_gracefully_and_loses_no_job(
    gearmand: Gearmand, tmp_path: Path
):
    """The worker alone in its process (no other thread: the C loop keeps the GIL across its
    recv and send): SIGTERM finishes the job in hand, sends its result, takes no more."""
    done = tmp_path / "done.txt"
    queue(gearmand, "termed", 3000)
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, gearmand.address, str(done)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    wait_for(lambda: done.exists() and len(done.read_text().split()) > 100, 20, what="100 jobs")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    ran = done.read_text().split()
    assert len(ran) == len(set(ran)) < 3000
    wait_for(lambda: queued(gearmand, "termed") == 3000 - len(ran), 10, what="the rest queued")


def test_a_job_server_that_closes_mid_stretch_is_reconnected(gearmand: Gearmand):
    calls: list[str] = []

    def handler(job: Any) -> None:
        calls.append(caller())

    queue(gearmand, "bounce", 50)
    worker = Worker([gearmand.address], {"bounce": handler})
    with running(worker):
        wait_for(lambda: len(calls) == 50, 20, what="50 jobs")
        gearmand.stop()
        gearmand.start()
        wait_for(
            lambda: worker.conns[0].serve is not None and "bounce" in str(gearmand.workers()),
            20,
            what="reconnected",
        )
        queue(gearmand, "bounce", 50)
        wait_for(lambda: len(calls) == 100, 20, what="50 more jobs")
        conn = worker.conns[0]
        assert conn.serve.args[0] == conn.sock.fileno()  # type: ignore[union-attr]
    assert "_serve" in calls[51:]  # the new connection's C loop ran jobs too


TIMED_SCRIPT = """
import sys, time
from gearmgr.worker.loop import Worker

out = open(sys.argv[2], "a", buffering=1)

def work(job):
    out.write(sys._getframe(1).f_code.co_name + "\\n")
    if job.text == "19":
        time.sleep(5)

sys.exit(Worker([sys.argv[1]], {"timed": work}, timeouts={"timed": 0.5}).run())
"""


def test_a_job_timeout_is_kept_by_the_c_loop(gearmand: Gearmand, tmp_path: Path):
    """A function with a timeout runs in C too (the watchdog armed and disarmed for each job):
    the job that overruns is failed by the watchdog, which ends the process."""
    calls = tmp_path / "calls.txt"
    queue(gearmand, "timed", 40)
    proc = subprocess.Popen(
        [sys.executable, "-c", TIMED_SCRIPT, gearmand.address, str(calls)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    started = time.monotonic()
    assert proc.wait(20) == ExitCode.TIMEOUT
    assert time.monotonic() - started < 5  # failed at its 0.5 s, not after its 5 s
    ran = calls.read_text().split()
    assert len(ran) == 20 and ran[1:].count("_serve") >= 17
    wait_for(lambda: queued(gearmand, "timed") == 20, 10, what="20 jobs left queued")


def test_max_memory_is_kept_by_the_c_loop(gearmand: Gearmand):
    calls: list[str] = []
    kept: list[bytearray] = []

    def handler(job: Any) -> None:
        calls.append(caller())
        if len(calls) == 30:
            kept.append(bytearray(b"x" * (96 << 20)))  # resident: written

    queue(gearmand, "grower", 100)
    worker = Worker([gearmand.address], {"grower": handler}, max_memory=current_rss() + (48 << 20))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive() and worker.leaving == sb.REASON_MAX_MEMORY
    assert worker.jobs == 30 and calls[1:].count("_serve") >= 25
    kept.clear()
    wait_for(lambda: queued(gearmand, "grower") == 70, 10, what="70 jobs left queued")


def test_with_two_servers_the_c_loop_gives_way_to_the_other(gearmand: Gearmand, tmp_path: Path):
    """Several servers: the C loop serves one connection only while the others have nothing
    to read, so a job on the second server does not wait for the first one's backlog."""
    second = Gearmand(tmp_path).start()
    calls: list[tuple[str, str]] = []

    def handler(job: Any) -> None:
        calls.append((caller(), job.text))
        time.sleep(0.002)

    try:
        queue(gearmand, "both", 500)
        worker = Worker([gearmand.address, second.address], {"both": handler})
        with running(worker):
            wait_for(lambda: len(calls) > 50, 20, what="the backlog under way")
            with Client([second.address], timeout=20) as client:
                assert client.submit("both", "other") == b""
            assert queued(gearmand, "both") > 100  # it did not wait for the backlog
            wait_for(lambda: len(calls) == 501, 30, what="every job")
        assert sum(1 for who, _ in calls if who == "_serve") > 400
        assert [text for _, text in calls].count("other") == 1
    finally:
        second.stop()
