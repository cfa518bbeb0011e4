"""Failed jobs and poison jobs, for real: a gearmand on a free port, `gearmgr run`, forked
workers, the `gearmgr failed` commands as a user runs them (docs/operations.md, "When jobs
fail")."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gearmgr.failures.store import FailedJobs, RecordSettings
from gearmgr.wire.client import Client, JobFailed
from tests.support import Gearmand, RunningSupervisor, free_port, wait_for

# Every run of ``keep`` leaves its workload in a file of its own, then fails.
KEEP = (
    "import os, time\n"
    "from pathlib import Path\n\n"
    "def keep(job):\n"
    "    out = Path(os.environ['RUNS_DIR']) / f'{os.getpid()}-{time.monotonic_ns()}'\n"
    "    out.write_bytes(job.data)\n"
    "    raise ValueError('cannot take ' + repr(job.data[:20]))\n"
)
# ``crash`` counts its runs; the workload "poison" kills its process, anything else succeeds.
CRASH = (
    "import os\n"
    "from pathlib import Path\n\n"
    "def crash(job):\n"
    "    with open(Path(os.environ['RUNS_DIR']) / 'runs', 'a') as f:\n"
    "        f.write(job.text + '\\n')\n"
    "    if job.text == 'poison':\n"
    "        os._exit(3)\n"
    "    return 'ok ' + job.text\n"
)


def gearmgr(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gearmgr", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def records(config: Path) -> list[dict]:
    done = gearmgr(config, "failed", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


@pytest.fixture
def start(tmp_path: Path, gearmand: Gearmand, runs: Path):
    """``start(code, **config)``: `gearmgr run` serving the functions of ``code`` (name ->
    worker file text), registered; stopped at teardown."""
    started: list[RunningSupervisor] = []

    def run(code: dict[str, str], **config: object) -> RunningSupervisor:
        folder = tmp_path / "fworkers"
        folder.mkdir(exist_ok=True)
        for name, text in code.items():
            (folder / f"{name}.py").write_text(text)
        settings = {"servers": [gearmand.address], "worker_dirs": ["fworkers"], **config}
        sup = RunningSupervisor(tmp_path, settings, {"RUNS_DIR": str(runs)}).start()
        started.append(sup)
        sup.wait_ready(gearmand.port, {name: 1 for name in code})
        return sup

    yield run
    for sup in started:
        sup.stop()


def test_a_failed_background_job_is_recorded_and_retry_runs_the_same_bytes(
    tmp_path: Path, gearmand: Gearmand, runs: Path, start: Callable[..., RunningSupervisor]
) -> None:
    sup = start({"keep": KEEP})
    workloads = [b"\x00\xff\xfe binary \x80\n", "caf\xe9".encode("latin-1"), b"plain text"]
    with Client([gearmand.address]) as client:
        for data in workloads:
            client.submit("keep", data, background=True)
    got = wait_for(lambda: len(records(sup.config_path)) == 3 and records(sup.config_path))
    assert [r["reason"] for r in got] == ["exception"] * 3
    assert sorted(r["size"] for r in got) == sorted(len(w) for w in workloads)
    assert all(r["function"] == "keep" and r["retried"] == 0 for r in got)
    assert set(got[0]) == {
        "id", "time", "host", "function", "handle", "unique", "reason", "error", "deaths",
        "size", "retried",
    }  # fmt: skip
    assert "Traceback (most recent call last)" in got[0]["error"]
    assert "ValueError: cannot take" in got[0]["error"]
    newest = got[0]["id"]
    shown = gearmgr(sup.config_path, "failed", "show", str(newest))
    assert shown.returncode == 0 and "ValueError: cannot take" in shown.stdout
    assert "plain text" in shown.stdout  # the start of the workload (submitted last)
    listed = gearmgr(sup.config_path, "failed", "--function", "keep")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 4  # head + 3

    ids = [str(r["id"]) for r in got]
    retried = gearmgr(sup.config_path, "failed", "retry", *ids)
    assert retried.returncode == 0, retried.stderr
    wait_for(lambda: len(list(runs.iterdir())) == 6, what="the three jobs run again")
    seen = sorted(p.read_bytes() for p in runs.iterdir())
    assert seen == sorted(workloads * 2)  # the same bytes, binary and non-UTF-8 included
    after = wait_for(lambda: len(records(sup.config_path)) == 6 and records(sup.config_path))
    assert sorted(r["retried"] for r in after) == [0, 0, 0, 1, 1, 1]


def test_a_job_that_kills_its_process_runs_poison_after_times_then_is_quarantined(
    tmp_path: Path, gearmand: Gearmand, runs: Path, start: Callable[..., RunningSupervisor]
) -> None:
    sup = start(
        {"crash": CRASH},
        functions={"crash": {"dedicated_count": 2, "poison_after": 3}},
    )
    outcome: list[BaseException | bytes | str] = []

    def poison() -> None:
        with Client([gearmand.address], timeout=90) as client:
            try:
                outcome.append(client.submit("crash", "poison", unique="poison-1"))
            except Exception as exc:
                outcome.append(exc)

    thread = threading.Thread(target=poison)
    thread.start()
    served = []
    with Client([gearmand.address], timeout=60) as client:
        # other jobs of the function are served while the poison job kills processes
        wait_for(lambda: (runs / "runs").exists(), timeout=30, what="the poison job's first run")
        for i in range(5):
            served.append(client.submit("crash", f"job{i}"))
    thread.join(90)
    assert served == [f"ok job{i}".encode() for i in range(5)]
    assert len(outcome) == 1 and isinstance(outcome[0], JobFailed), outcome
    assert outcome[0].warnings == ["Quarantined: killed 3 worker processes"]
    lines = (runs / "runs").read_text().splitlines()
    assert lines.count("poison") == 3  # exactly poison_after runs

    def deaths() -> list[str]:
        return [line for line in sup.log().splitlines() if "died running a job of" in line]

    # the workers counted deaths the supervisor may not have reaped yet: wait for its log
    wait_for(lambda: len(deaths()) >= 3, what="the supervisor's log of three deaths")
    assert len(deaths()) == 3
    assert all("job of crash (unique 'poison-1', handle 'H:" in d for d in deaths())
    wait_for(lambda: "quarantined: it killed 3 worker processes" in sup.log())
    (record,) = records(sup.config_path)
    assert record["reason"] == "quarantined" and record["deaths"] == 3
    assert record["unique"] == "poison-1" and record["size"] == len("poison")
    status = sup.status()
    assert status["functions"]["crash"]["quarantined"] == 1
    assert status["failed_jobs"]["recorded"]["quarantined"] == 1
    assert status["failed_jobs"]["deaths"] == 3
    sup.assert_alive()


def test_a_timed_out_job_is_recorded_with_where_it_was(
    tmp_path: Path, gearmand: Gearmand, runs: Path, start: Callable[..., RunningSupervisor]
) -> None:
    sleepy = "import time\n\ndef sleepy(job):\n    time.sleep(30)\n"
    sup = start({"sleepy": sleepy}, timeout="300ms")
    with Client([gearmand.address], timeout=30) as client, pytest.raises(JobFailed):
        client.submit("sleepy", b"zzz")
    (record,) = wait_for(lambda: records(sup.config_path))
    assert record["reason"] == "timeout"
    assert record["error"].startswith("TimeoutError: job exceeded its timeout of 0.3s")
    assert "time.sleep(30)" in record["error"]  # where the job's thread was


def test_many_processes_failing_at_once_lose_no_record(
    tmp_path: Path, gearmand: Gearmand, runs: Path, start: Callable[..., RunningSupervisor]
) -> None:
    boom = "def boom(job):\n    raise RuntimeError(job.text)\n"
    sup = start({"boom": boom}, dedicated_count=6)
    sup.wait_ready(gearmand.port, {"boom": 6})
    jobs = 300
    with Client([gearmand.address]) as client:
        for i in range(jobs):
            client.submit("boom", f"n{i}", background=True, unique=f"u{i}")
    got = wait_for(
        lambda: len(records(sup.config_path)) >= jobs and records(sup.config_path), timeout=60
    )
    assert sorted(r["unique"] for r in got) == sorted(f"u{i}" for i in range(jobs))
    assert len({r["handle"] for r in got}) == jobs
    assert sup.status()["failed_jobs"]["recorded"] == {
        "exception": jobs, "timeout": 0, "quarantined": 0, "lost": 0
    }  # fmt: skip


def test_the_commands_work_with_the_supervisor_stopped(
    tmp_path: Path, gearmand: Gearmand, runs: Path, start: Callable[..., RunningSupervisor]
) -> None:
    boom = "def boom(job):\n    raise RuntimeError(job.text)\n"
    sup = start({"boom": boom, "keep": KEEP})
    with Client([gearmand.address]) as client:
        for i in range(3):
            client.submit("boom", f"b{i}", background=True)
        client.submit("keep", "k0", background=True)
    wait_for(lambda: len(records(sup.config_path)) == 4)
    sup.stop()
    config = sup.config_path
    assert sup.proc is not None and sup.proc.returncode == 0
    assert len(records(config)) == 4
    boom_ids = [r["id"] for r in records(config) if r["function"] == "boom"]
    # retry with no supervisor running: the job waits at gearmand
    done = gearmgr(config, "failed", "retry", str(boom_ids[0]))
    assert done.returncode == 0 and done.stdout.startswith(f"retried {boom_ids[0]} (boom) as H:")
    wait_for(lambda: gearmand.status().get("boom", (0, 0, 0))[0] == 1, what="the job queued")
    # bad ids: one clear line, exit 1; not a number: a usage error
    for args in (("show", "999"), ("retry", "999"), ("retry", str(boom_ids[0]), "999")):
        done = gearmgr(config, "failed", *args)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("gearmgr: no failed job 999 in ")
        assert len(done.stderr.splitlines()) == 1
    done = gearmgr(config, "failed", "show", "abc")
    assert done.returncode == 2 and "expected a record id" in done.stderr
    # purge by function, by age
    done = gearmgr(config, "failed", "purge", "--function", "keep")
    assert done.returncode == 0 and done.stdout == "deleted 1 record\n"
    done = gearmgr(config, "failed", "purge", "--older-than", "1h")
    assert done.returncode == 0 and done.stdout == "deleted 0 records\n"
    assert sorted(r["id"] for r in records(config)) == sorted(boom_ids)
    done = gearmgr(config, "failed", "purge")
    assert done.stdout == "deleted 3 records\n" and records(config) == []


def test_a_missing_record_file_and_recording_off_are_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "gearmgr.yaml"
    config.write_text("failed_jobs: nowhere/failed.db\n")
    for args in (("failed",), ("failed", "show", "1"), ("failed", "purge")):
        done = gearmgr(config, *args)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr == (
            f"gearmgr: failed_jobs {tmp_path}/nowhere/failed.db: no such file"
            " (no job has failed there yet)\n"
        )
    assert not (tmp_path / "nowhere").exists()
    config.write_text("failed_jobs: none\n")
    done = gearmgr(config, "failed")
    assert done.returncode == 1
    assert done.stderr == f"gearmgr: {config}: failed_jobs is none: failed jobs are not recorded\n"


def test_an_id_past_what_sqlite_holds_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "gearmgr.yaml"
    config.write_text(f"failed_jobs: {tmp_path}/failed.db\n")
    store = FailedJobs(RecordSettings(str(tmp_path / "failed.db")))
    assert store.count() == 0  # the file exists, empty
    store.close()
    huge = str(2**63)  # one past SQLite's largest integer
    for args in (("show", huge), ("retry", huge)):
        done = gearmgr(config, "failed", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.splitlines()[-1].endswith(
            f"expected a record id (a whole number >= 1), got '{huge}'"
        )
    assert gearmgr(config, "failed", "show", str(2**63 - 1)).returncode == 1  # unknown id


def test_a_record_that_cannot_be_written_is_logged_and_counted_not_fatal(
    gearmand: Gearmand, start: Callable[..., RunningSupervisor]
) -> None:
    boom = "def boom(job):\n    raise RuntimeError(job.text)\n"
    sup = start({"boom": boom}, failed_jobs="/proc/no-such-folder/failed.db")
    assert "failed_jobs /proc/no-such-folder/failed.db: unable to open" in sup.log()
    with Client([gearmand.address]) as client, pytest.raises(JobFailed):
        client.submit("boom", "b0")
    wait_for(lambda: sup.status()["failed_jobs"]["recorded"]["lost"] == 1)
    wait_for(lambda: "failed job H:" in sup.log() and "not recorded" in sup.log())
    sup.assert_alive()


def test_retry_all_of_a_function_skips_retried_and_cut_records(
    tmp_path: Path, gearmand: Gearmand
) -> None:
    from gearmgr.failures.store import WORKLOAD_LIMIT, FailedJobs, Failure, RecordSettings

    config = tmp_path / "gearmgr.yaml"
    config.write_text(f"servers: ['{gearmand.address}']\nfailed_jobs: failed.db\n")
    store = FailedJobs(RecordSettings(str(tmp_path / "failed.db")))

    def add(function: str, data: bytes, when: float) -> int:
        failure = Failure(function, b"H:x:1", b"u", data, "exception", "ValueError: x")
        return store.add(failure, now=when)

    now = time.time()
    old = add("resize", b"old", now - 7200)
    new = add("resize", b"new", now)
    cut = add("resize", b"x" * (WORKLOAD_LIMIT + 1), now)
    other = add("report", b"other", now)
    store.mark_retried(new)
    since = json.loads(gearmgr(config, "failed", "--since", "1h", "--json").stdout)
    assert [r["id"] for r in since] == [other, cut, new]
    done = gearmgr(config, "failed", "retry", "--all", "--function", "resize")
    assert done.returncode == 1  # the cut record cannot be retried; the others are
    assert done.stdout.startswith(f"retried {old} (resize) as H:")
    assert f"failed job {cut}: its workload ({WORKLOAD_LIMIT + 1} bytes) was cut" in done.stderr
    assert gearmand.status()["resize"][0] == 1 and "report" not in gearmand.status()
    retried = {r["id"]: r["retried"] for r in records(config)}
    assert retried == {old: 1, new: 1, cut: 0, other: 0}
    shown = gearmgr(config, "failed", "show", str(cut))
    assert "(only the first 1048576 kept: it cannot be retried)" in shown.stdout
    assert gearmgr(config, "failed", "retry").returncode == 2  # neither ids nor --all


def test_retry_all_holds_one_workload_at_a_time(tmp_path: Path) -> None:
    # 200 records of 1 MiB each: retry reads each workload as it submits it, never all first.
    from gearmgr.failures.store import WORKLOAD_LIMIT, Failure

    config = tmp_path / "gearmgr.yaml"
    config.write_text(f"servers: ['127.0.0.1:{free_port()}']\nfailed_jobs: failed.db\n")
    store = FailedJobs(RecordSettings(str(tmp_path / "failed.db")))
    data = b"w" * WORKLOAD_LIMIT
    for n in range(200):
        store.add(Failure("resize", b"H:x:%d" % n, b"u", data, "exception", "ValueError: x"))
    store.close()
    script = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'gearmgr', 'failed', 'retry', '--all',"
        f" '-c', {str(config)!r}], capture_output=True, text=True)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(done.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    code, peak_kib = map(int, done.stdout.split())
    assert code == 1 and "Traceback" not in done.stderr  # no job server there: one line
    assert done.stderr.count("\n") == 1 and "127.0.0.1:" in done.stderr
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB for 200 MiB of workloads"


def test_the_list_reads_no_error_texts(tmp_path: Path) -> None:
    # 2048 records with 64 KiB tracebacks (128 MiB): the table (and retry --all) never read
    # the error texts it does not print; `show ID` and --json do.
    from gearmgr.failures.store import ERROR_LIMIT, Failure

    config = tmp_path / "gearmgr.yaml"
    config.write_text(f"servers: ['127.0.0.1:{free_port()}']\nfailed_jobs: failed.db\n")
    store = FailedJobs(RecordSettings(str(tmp_path / "failed.db")))
    store.add(Failure("resize", b"H:x:1", b"u", b"w", "exception", "E" * ERROR_LIMIT))
    for _ in range(11):  # doubled 11 times: 2048 records
        store.db.execute(
            "INSERT INTO failed (time, host, function, handle, unique_id, reason, error, deaths,"
            " size, workload, retried) SELECT time, host, function, handle, unique_id, reason,"
            " error, deaths, size, workload, 1 FROM failed"
        )
    store.close()
    script = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'gearmgr', 'failed',"
        f" '-c', {str(config)!r}], capture_output=True, text=True)\n"
        "print(done.returncode, done.stdout.count('\\n'),"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    code, lines, peak_kib = map(int, done.stdout.split())
    assert code == 0 and lines == 2049  # a head line and a line per record
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB for 128 MiB of error texts"


ASYNC_FAILS = (
    "import asyncio\n\n"
    "async def afail(job):\n"
    "    if job.text == 'slow':\n"
    "        await asyncio.sleep(30)\n"
    "    raise ValueError('async cannot take ' + job.text)\n"
)


def test_the_failures_of_an_async_function_are_recorded_too(
    gearmand: Gearmand, start: Callable[..., RunningSupervisor]
) -> None:
    sup = start(
        {"afail": ASYNC_FAILS},
        functions={"afail": {"concurrency": 4, "timeout": "1s"}},
    )
    with Client([gearmand.address]) as client:
        client.submit("afail", "boom", background=True)
        client.submit("afail", "slow", background=True)
    got = wait_for(lambda: len(records(sup.config_path)) == 2 and records(sup.config_path))
    by_reason = {r["reason"]: r for r in got}
    assert set(by_reason) == {"exception", "timeout"}
    assert "ValueError: async cannot take boom" in by_reason["exception"]["error"]
    timed_out = by_reason["timeout"]["error"]
    assert "exceeded its timeout of 1s" in timed_out and "asyncio.sleep(30)" in timed_out


def test_retry_goes_to_the_server_of_s_when_the_configs_is_not_the_one_running(
    tmp_path: Path, gearmand: Gearmand
) -> None:
    """As after `make run PORT=N`: the config names 4730-like servers nobody serves."""
    from gearmgr.failures.store import FailedJobs, Failure, RecordSettings

    config = tmp_path / "gearmgr.yaml"
    config.write_text(f"servers: ['127.0.0.1:{free_port()}']\nfailed_jobs: failed.db\n")
    store = FailedJobs(RecordSettings(str(tmp_path / "failed.db")))
    record = store.add(Failure("resize", b"H:x:1", b"u", b"data", "exception", "ValueError: x"))
    refused = gearmgr(config, "failed", "retry", str(record))
    assert refused.returncode == 1 and "no job server reachable" in refused.stderr
    assert refused.stderr.strip().endswith("name the job server with -s HOST:PORT")
    done = gearmgr(config, "failed", "retry", str(record), "-s", gearmand.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"retried {record} (resize) as H:")
    assert gearmand.status()["resize"][0] == 1


ASYNC_FAILS = (
    "import asyncio\n\n"
    "async def afail(job):\n"
    "    if job.text == 'slow':\n"
    "        await asyncio.sleep(30)\n"
    "    raise ValueError('async cannot take ' + job.text)\n"
)
