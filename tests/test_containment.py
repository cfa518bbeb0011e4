"""Containment: nothing a job forks outlives its worker process, and a job that kills every
process that takes it backs its slot off instead of making the supervisor fork in a loop."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from tests.support import Gearmand, gearman_cli, pid_alive, wait_for

FORKER = (
    "import os, time\n\n"
    "def forker(job):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:  # a grandchild that keeps the worker's sockets and never ends\n"
    "        while True:\n"
    "            time.sleep(1)\n"
    "    return str(pid)\n"
)


def start_forker(supervisor_factory, workers_dir: Path, gearmand: Gearmand, **config):
    (workers_dir / "forker.py").write_text(FORKER)
    sup = supervisor_factory({"include": ["forker"], **config})
    sup.wait_ready(gearmand.port, {"forker": 1})
    grandchild = int(gearman_cli(gearmand.port, "-f", "forker", "x").stdout)
    if not config.get("max_jobs"):  # a recycled process may take it along before we look
        assert pid_alive(grandchild)
    return sup, grandchild


def test_a_jobs_grandchild_does_not_outlive_a_stop(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup, grandchild = start_forker(supervisor_factory, workers_dir, gearmand)
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    wait_for(lambda: not pid_alive(grandchild), timeout=5, what="the grandchild to be gone")
    # and nothing of ours is still registered at the job server
    wait_for(
        lambda: not any("forker" in line for line in gearmand.workers()),
        timeout=5,
        what="no worker for forker left at gearmand",
    )


def test_a_jobs_grandchild_goes_with_its_recycled_process(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup, grandchild = start_forker(supervisor_factory, workers_dir, gearmand, max_jobs=1)
    wait_for(lambda: not pid_alive(grandchild), timeout=10, what="the grandchild to be gone")
    sup.wait_ready(gearmand.port, {"forker": 1})
    sup.assert_alive()


def test_a_worker_killed_by_the_supervisor_takes_its_group(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup, grandchild = start_forker(supervisor_factory, workers_dir, gearmand)
    sup.signal(signal.SIGQUIT)  # stop at once: SIGKILL to every process
    sup.wait(30)
    wait_for(lambda: not pid_alive(grandchild), timeout=5, what="the grandchild to be gone")


def test_workers_run_in_process_groups_of_their_own(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    import os

    for pid in sup.worker_pids():
        assert os.getpgid(pid) == pid
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"


def test_jobs_that_time_out_back_their_slot_off(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    """Each job overruns its timeout and its process exits: the slot's restarts slow down
    (0, 0.5 s, 1 s, 2 s ...) instead of forking at once for every job in the queue."""
    (workers_dir / "stuck.py").write_text(
        "import time\n\ndef stuck(job):\n    time.sleep(30)\n    return 'never'\n"
    )
    sup = supervisor_factory({"include": ["stuck"], "timeout": "200ms"})
    sup.wait_ready(gearmand.port, {"stuck": 1})
    for i in range(20):
        gearman_cli(gearmand.port, "-b", "-f", "stuck", str(i))
    started = time.monotonic()
    wait_for(lambda: "restarting in" in sup.log(), timeout=15, what="a delayed restart")
    time.sleep(3.0)  # a fixed window in which to count the restarts
    elapsed = time.monotonic() - started
    restarts = sup.status()["functions"]["stuck"]["restarts"].get("timeout", 0)
    # Without backoff a restart comes every ~0.3 s (0.2 s timeout + start): over 10 here.
    assert restarts <= 7, f"{restarts} restarts in {elapsed:.1f}s"
    delays = [float(d) for d in re.findall(r"\(timeout\); restarting in ([\d.]+)s", sup.log())]
    assert delays == sorted(delays) and delays[-1] >= 0.9, delays
    sup.assert_alive()


ESCAPER = (
    "import os, subprocess, time\n\n"
    "def escaper(job):\n"
    "    daemon = subprocess.Popen(['sleep', '300'], start_new_session=True).pid\n"
    "    pid = os.fork()\n"
    "    if pid == 0:  # leaves the worker's group and keeps its sockets\n"
    "        os.setpgid(0, 0)\n"
    "        while True:\n"
    "            time.sleep(1)\n"
    "    return f'{daemon} {pid}'\n"
)


def test_what_a_job_starts_in_a_session_or_group_of_its_own_does_not_outlive_a_stop(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    (workers_dir / "escaper.py").write_text(ESCAPER)
    sup = supervisor_factory({"include": ["escaper"]})
    sup.wait_ready(gearmand.port, {"escaper": 1})
    pids = [int(p) for p in gearman_cli(gearmand.port, "-f", "escaper", "x").stdout.split()]
    assert all(pid_alive(p) for p in pids)
    sup.signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=5, what="the escapees gone")
    wait_for(
        lambda: not any("escaper" in line for line in gearmand.workers()),
        timeout=5,
        what="no worker for escaper left at gearmand",
    )


def test_what_a_job_starts_in_a_session_of_its_own_goes_with_its_recycled_process(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    (workers_dir / "escaper.py").write_text(ESCAPER)
    sup = supervisor_factory({"include": ["escaper"], "max_jobs": 1})
    sup.wait_ready(gearmand.port, {"escaper": 1})
    pids = [int(p) for p in gearman_cli(gearmand.port, "-f", "escaper", "x").stdout.split()]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="the escapees gone")
    sup.wait_ready(gearmand.port, {"escaper": 1})
    assert "left behind by a job" in sup.log()
    sup.assert_alive()


def test_stray_signals_are_logged_and_ignored(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    before = sup.worker_pids()
    for sig in (signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGIO):
        sup.signal(sig)
    wait_for(lambda: "SIGIO ignored" in sup.log(), timeout=5, what="the signals logged")
    sup.assert_alive()
    assert sup.worker_pids() == before
    assert (sup.workdir / "gearmgr.sock").exists()
