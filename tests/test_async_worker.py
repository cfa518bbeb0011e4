"""Integration: processes of `async def` functions run many jobs at once (the `concurrency`
key), under the real `gearmgr run`, against a real gearmand, with real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gearmgr.wire.client import Client, JobFailed
from tests.support import Gearmand, wait_for

# An async job that naps (the workload: seconds, then an optional marker file to write once
# done) and says which process ran it.
NAP = """\
import asyncio
import os
from pathlib import Path


async def nap(job):
    seconds, _, marker = job.text.partition(" ")
    await asyncio.sleep(float(seconds))
    if marker:
        Path(marker).write_text("done")
    return str(os.getpid())
"""

FAILS = """\
import asyncio


class fails:
    async def run(self, job):
        await asyncio.sleep(0.05)
        if job.text == "bad":
            raise ValueError("bad input")
        job.status(1, 2)
        job.warning("careful")
        return job.text.upper()
"""


@pytest.fixture
def async_workers(workers_dir: Path) -> Path:
    (workers_dir / "nap.py").write_text(NAP)
    (workers_dir / "fails.py").write_text(FAILS)
    return workers_dir


def running_at_server(gearmand: Gearmand, function: str) -> tuple[int, int]:
    queued, running, _workers = gearmand.status().get(function, (0, 0, 0))
    return queued, running


def submit_background(gearmand: Gearmand, jobs: list[str], function: str = "nap") -> None:
    with Client([gearmand.address]) as client:
        for text in jobs:
            client.submit(function, text, background=True)


def one_process(sup, function: str) -> dict:
    def found():
        status = sup.try_status()
        procs = [p for p in (status or {}).get("processes", []) if function in p["functions"]]
        return procs[0] if len(procs) == 1 else None

    return wait_for(found, timeout=15, what=f"one process of {function}")


def test_one_process_runs_its_places_at_once_and_the_server_never_sees_more(
    supervisor_factory, gearmand: Gearmand, async_workers: Path, tmp_path: Path
):
    sup = supervisor_factory({"include": ["nap"], "functions": {"nap": {"concurrency": 8}}})
    sup.wait_ready(gearmand.port, {"nap": 1})
    markers = [tmp_path / f"m{i}" for i in range(32)]
    started = time.monotonic()
    submit_background(gearmand, [f"0.5 {m}" for m in markers])
    seen: list[int] = []
    in_hand: list[int] = []

    def all_done() -> bool:
        _queued, running = running_at_server(gearmand, "nap")
        seen.append(running)
        status = sup.try_status()
        for proc in (status or {}).get("processes", []):
            in_hand.append(proc["in_hand"])
            assert proc["places"] == 8
        return all(m.exists() for m in markers)

    wait_for(all_done, timeout=30, interval=0.05, what="32 jobs done")
    elapsed = time.monotonic() - started
    assert max(seen) == 8, seen  # concurrency really reached...
    assert max(in_hand) == 8
    assert all(n <= 8 for n in seen)  # ...and the server never counted more than the places
    # 32 jobs of 0.5 s in one process: 4 rounds of 8, far from the 16 s one at a time takes
    assert elapsed < 8, elapsed
    assert len(sup.worker_pids("nap")) == 1
    ps = subprocess.run(
        ["ps", "-o", "args=", "-p", str(sup.worker_pids("nap")[0])], text=True, capture_output=True
    ).stdout
    assert "/8]" in ps  # the title shows the jobs in hand and the places


def test_kill_9_with_jobs_in_hand_loses_none(
    supervisor_factory, gearmand: Gearmand, async_workers: Path, tmp_path: Path
):
    sup = supervisor_factory({"include": ["nap"], "functions": {"nap": {"concurrency": 8}}})
    sup.wait_ready(gearmand.port, {"nap": 1})
    markers = [tmp_path / f"k{i}" for i in range(12)]
    submit_background(gearmand, [f"1.5 {m}" for m in markers])
    wait_for(lambda: running_at_server(gearmand, "nap")[1] == 8, timeout=10, what="8 in hand")
    victim = one_process(sup, "nap")["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: all(m.exists() for m in markers), timeout=30, what="every job done")
    assert victim not in sup.worker_pids("nap")
    assert running_at_server(gearmand, "nap") == (0, 0)


def test_a_timeout_cancels_the_one_job_and_the_others_go_on(
    supervisor_factory, gearmand: Gearmand, async_workers: Path
):
    sup = supervisor_factory(
        {"include": ["nap"], "functions": {"nap": {"concurrency": 4, "timeout": "1s"}}}
    )
    sup.wait_ready(gearmand.port, {"nap": 1})
    results: dict[str, object] = {}

    def submit(text: str) -> None:
        with Client([gearmand.address], timeout=20) as client:
            try:
                results[text] = client.submit("nap", text)
            except JobFailed as exc:
                results[text] = exc

    threads = [threading.Thread(target=submit, args=(t,)) for t in ("30", "0.6", "0.7", "0.8")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    failed = results["30"]
    assert isinstance(failed, JobFailed) and "TimeoutError" in str(failed), failed
    pids = {results[t] for t in ("0.6", "0.7", "0.8")}
    assert len(pids) == 1 and all(isinstance(p, bytes) for p in pids), results
    # the process that timed the job out is the one that served the others, and it lives on
    assert [int(p) for p in pids] == sup.worker_pids("nap")
    with Client([gearmand.address], timeout=10) as client:
        assert client.submit("nap", "0") == pids.pop()
    assert sup.status()["functions"]["nap"]["jobs_failed"] == 1


def test_term_finishes_every_job_in_hand(
    supervisor_factory, gearmand: Gearmand, async_workers: Path, tmp_path: Path
):
    sup = supervisor_factory({"include": ["nap"], "functions": {"nap": {"concurrency": 6}}})
    sup.wait_ready(gearmand.port, {"nap": 1})
    markers = [tmp_path / f"t{i}" for i in range(6)]
    submit_background(gearmand, [f"1.5 {m}" for m in markers])
    wait_for(lambda: running_at_server(gearmand, "nap")[1] == 6, timeout=10, what="6 in hand")
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    assert all(m.exists() for m in markers)
    assert running_at_server(gearmand, "nap") == (0, 0)


def test_max_jobs_recycles_after_the_jobs_in_hand(
    supervisor_factory, gearmand: Gearmand, async_workers: Path, tmp_path: Path
):
    sup = supervisor_factory(
        {"include": ["nap"], "functions": {"nap": {"concurrency": 4, "max_jobs": 4}}}
    )
    sup.wait_ready(gearmand.port, {"nap": 1})
    first = one_process(sup, "nap")["pid"]
    markers = [tmp_path / f"j{i}" for i in range(10)]
    submit_background(gearmand, [f"0.3 {m}" for m in markers])
    wait_for(lambda: all(m.exists() for m in markers), timeout=30, what="every job done")
    wait_for(lambda: first not in sup.worker_pids("nap"), timeout=10, what="a recycle")
    assert "max_jobs" in sup.log()


def test_exceptions_fail_their_own_job_and_the_job_api_works_from_coroutines(
    supervisor_factory, gearmand: Gearmand, async_workers: Path
):
    sup = supervisor_factory({"include": ["fails"], "functions": {"fails": {"concurrency": 4}}})
    sup.wait_ready(gearmand.port, {"fails": 1})
    warnings: list[bytes] = []
    statuses: list[tuple[int, int]] = []
    with Client([gearmand.address], timeout=10) as client:
        with pytest.raises(JobFailed, match="ValueError: bad input"):
            client.submit("fails", "bad")
        got = client.submit(
            "fails",
            "good",
            on_warning=warnings.append,
            on_status=lambda n, d: statuses.append((n, d)),
        )
    assert got == b"GOOD" and warnings == [b"careful"] and statuses == [(1, 2)]
    status = sup.status()["functions"]["fails"]
    assert (status["jobs_done"], status["jobs_failed"]) == (1, 1)


def test_a_shared_process_runs_an_async_function_one_job_at_a_time(
    supervisor_factory, gearmand: Gearmand, async_workers: Path
):
    sup = supervisor_factory({"include": ["nap", "reverse"], "count": 1, "dedicated_count": 0})
    sup.wait_ready(gearmand.port, {"nap": 1, "reverse": 1})
    with Client([gearmand.address], timeout=10) as client:
        pid = client.submit("nap", "0.01")
        assert client.submit("reverse", "abc") == b"cba"
        assert client.submit("nap", "0") == pid


def test_concurrency_on_a_plain_def_is_an_error_naming_the_key(tmp_path: Path, workers_dir: Path):
    config = tmp_path / "gearmgr.yaml"
    config.write_text(
        "worker_dirs: [workers]\ninclude: [reverse]\nfunctions:\n  reverse:\n    concurrency: 8\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "gearmgr", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out
    assert "functions.reverse.concurrency: 8 needs an async def function" in out.stdout


APPEND = """\
import asyncio
import os


async def append(job):
    seconds, _, path = job.text.partition(" ")
    await asyncio.sleep(float(seconds))
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
"""


def test_max_lifetime_leaves_after_every_job_in_hand_and_runs_none_twice(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    (workers_dir / "append.py").write_text(APPEND)
    sup = supervisor_factory(
        {"include": ["append"], "functions": {"append": {"concurrency": 4, "max_lifetime": "2s"}}}
    )
    sup.wait_ready(gearmand.port, {"append": 1})
    markers = [tmp_path / f"a{i}" for i in range(4)]
    # jobs longer than the lifetime: whichever process takes them reaches it with 4 in hand
    submit_background(gearmand, [f"2.5 {m}" for m in markers], function="append")
    wait_for(lambda: running_at_server(gearmand, "append")[1] == 4, timeout=10, what="4 in hand")
    wait_for(lambda: all(m.exists() for m in markers), timeout=20, what="every job done")
    pids = {m.read_text() for m in markers}
    assert len(pids) == 1 and all(m.read_text().count("\n") == 1 for m in markers)  # each once
    pid = int(pids.pop())
    wait_for(lambda: pid not in sup.worker_pids("append"), timeout=10, what="the recycle")
    assert "max_lifetime" in sup.log()
