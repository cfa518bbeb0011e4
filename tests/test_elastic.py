"""Elastic pools with a real gearmand and real workers (issue 12): growth under a backlog up to
the ceiling, shrinking after scale_down_delay without stopping a busy process, scale from zero,
and `gearmgr scale/pause/resume` at run time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gearmgr.wire.client import Client
from tests.support import Gearmand, RunningSupervisor, wait_for

TRACK = (
    "import os, time\n"
    "from pathlib import Path\n\n"
    "def track(job):\n"
    "    folder, name, seconds = job.text.split('|')\n"
    "    with open(Path(folder) / 'log', 'a') as f:\n"
    "        f.write(f'start {name} {os.getpid()}\\n')\n"
    "    time.sleep(float(seconds))\n"
    "    with open(Path(folder) / 'log', 'a') as f:\n"
    "        f.write(f'end {name} {os.getpid()}\\n')\n"
    "    return name\n"
)


def add_track(workers_dir: Path) -> None:
    (workers_dir / "track.py").write_text(TRACK)


def submit(port: int, folder: Path, jobs: list[tuple[str, float]]) -> None:
    with Client(f"127.0.0.1:{port}") as client:
        for name, seconds in jobs:
            client.submit("track", f"{folder}|{name}|{seconds}", background=True)


def events(folder: Path) -> list[tuple[str, str]]:
    path = folder / "log"
    if not path.exists():
        return []
    return [tuple(line.split()[:2]) for line in path.read_text().splitlines()]  # type: ignore[misc]


def workers_of(gearmand: Gearmand, function: str) -> int:
    return gearmand.status().get(function, (0, 0, 0))[2]


def pool(sup: RunningSupervisor, function: str) -> dict:
    return sup.status()["functions"][function]


def cli(sup: RunningSupervisor, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gearmgr", *args, "-c", str(sup.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_grows_to_the_ceiling_and_shrinks_after_the_delay_without_cutting_a_job(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    add_track(workers_dir)
    config = {"track": {"dedicated_count": 1, "max_processes": 4, "scale_down_delay": "1s"}}
    sup = supervisor_factory({"include": ["track"], "functions": config})
    sup.wait_ready(gearmand.port, {"track": 1})
    out = tmp_path / "jobs"
    out.mkdir()
    # Three long jobs keep processes busy while the short ones drain and the pool shrinks.
    jobs = [(f"long{i}", 5.0) for i in range(3)] + [(f"short{i}", 0.3) for i in range(20)]
    started = time.monotonic()
    submit(gearmand.port, out, jobs)
    wait_for(lambda: workers_of(gearmand, "track") >= 4, timeout=8, what="the pool at 4")
    assert time.monotonic() - started < 6  # within 5 s of the backlog, plus registering
    peak = 0
    # The pool comes back to its floor once no job waits (the long ones still run meanwhile).

    def back_to_the_floor() -> bool:
        nonlocal peak
        status = pool(sup, "track")
        peak = max(peak, status["processes"], status["target"])
        return status["target"] == 1 and status["processes"] == 1

    wait_for(back_to_the_floor, timeout=30, what="the pool back at 1")
    assert peak <= 4  # never above the ceiling
    wait_for(lambda: len(events(out)) == 2 * len(jobs), timeout=20, what="every job ended")
    seen = events(out)
    for name, _ in jobs:  # each job started once and ended once: none cut, none run twice
        assert seen.count(("start", name)) == 1, seen
        assert seen.count(("end", name)) == 1, seen
    log = sup.log()
    assert "pool of track grows" in log and "pool of track shrinks" in log
    status = sup.status()
    assert status["functions"]["track"]["min"] == 1 and status["functions"]["track"]["max"] == 4
    assert "crash" not in status["functions"]["track"]["restarts"]


def test_scale_from_zero(supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path):
    add_track(workers_dir)
    config = {"track": {"dedicated_count": 0, "max_processes": 2, "scale_down_delay": "1s"}}
    sup = supervisor_factory({"include": ["track"], "functions": config})
    wait_for(lambda: sup.try_status(), timeout=15, what="the control socket")
    assert sup.status()["processes"] == []
    out = tmp_path / "jobs"
    out.mkdir()
    submit(gearmand.port, out, [("one", 0.1)])
    wait_for(lambda: ("end", "one") in events(out), timeout=10, what="the job done from zero")
    wait_for(lambda: sup.status()["processes"] == [], timeout=15, what="back to zero")


def test_pause_and_resume_with_a_job_waiting(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": ["reverse", "pid"], "count": 1})
    sup.wait_ready(gearmand.port, {"reverse": 2, "pid": 2})
    paused = cli(sup, "pause", "reverse")
    assert paused.returncode == 0, paused.stderr
    assert "reverse paused" in paused.stdout
    wait_for(lambda: workers_of(gearmand, "reverse") == 0, timeout=15, what="reverse unserved")
    assert workers_of(gearmand, "pid") >= 1  # the shared process serves the rest
    with Client(gearmand.address) as client:
        client.submit("reverse", "abc", background=True)
    wait_for(lambda: pool(sup, "reverse")["queued"] == 1, timeout=5, what="the job waiting")
    status = pool(sup, "reverse")
    assert status["paused"] is True and status["target"] == 0
    assert "pause requested: reverse paused" in sup.log()
    scaled = cli(sup, "scale", "reverse", "1")  # sized while paused: says what starts them
    assert scaled.returncode == 0 and scaled.stdout.strip().endswith(
        "(now 0); reverse is paused: `gearmgr resume reverse` starts them"
    )
    resumed = cli(sup, "resume", "reverse")
    assert resumed.returncode == 0 and "reverse resumed" in resumed.stdout
    wait_for(lambda: gearmand.status()["reverse"][0] == 0, timeout=15, what="the job done")
    assert pool(sup, "reverse")["paused"] is False
    # the first process back may run the job before the other has registered
    wait_for(lambda: workers_of(gearmand, "reverse") == 2, timeout=15, what="both serve it")


def test_scale_sets_the_pool_and_an_unknown_function_names_the_real_ones(
    supervisor_factory, gearmand: Gearmand
):
    sup = supervisor_factory({"include": ["reverse", "pid"]})
    sup.wait_ready(gearmand.port, {"reverse": 1, "pid": 1})
    scaled = cli(sup, "scale", "reverse", "3")
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.strip() == "gearmgr: reverse: 1..1 -> 3..3 processes (now 1)"
    wait_for(lambda: workers_of(gearmand, "reverse") == 3, timeout=15, what="3 reverse workers")
    status = pool(sup, "reverse")
    assert (status["target"], status["min"], status["max"]) == (3, 3, 3)
    down = cli(sup, "scale", "reverse", "1", "2")
    assert down.returncode == 0 and "3..3 -> 1..2" in down.stdout
    wait_for(lambda: workers_of(gearmand, "reverse") == 2, timeout=15, what="drained to 2")
    unknown = cli(sup, "scale", "nope", "2")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "gearmgr: no function 'nope'; functions: pid, reverse"
    bad = cli(sup, "scale", "reverse", "3", "2")
    assert bad.returncode == 2 and "expected MIN <= MAX" in bad.stderr


def test_a_scale_beyond_the_process_limit_is_refused_and_the_supervisor_lives_on(
    supervisor_factory, gearmand: Gearmand
):
    sup = supervisor_factory({"include": ["reverse", "pid"], "count": 1})
    sup.wait_ready(gearmand.port, {"reverse": 2, "pid": 2})
    refused = cli(sup, "scale", "reverse", "1000")
    assert refused.returncode == 1
    assert "gearmgr runs at most 1000" in refused.stderr
    sup.assert_alive()
    assert pool(sup, "reverse")["min"] == 1  # nothing changed
