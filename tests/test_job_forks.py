"""A job's function that calls os.fork() (gearmgr/worker/serving.py, Serving._leave_child): the
child that comes back from the function (returning, raising, sys.exit) leaves at once; it never
answers the parent's job, serves the parent's connection or writes the parent's slot. The same
on the C loop (jobs in a row) and the Python path, with and without a timeout (a watchdog
thread in the parent, none in the child).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gearmgr.wire.client import Client
from tests.support import Gearmand, function_status, wait_for

FORKING_SCRIPT = """
import os, sys
from gearmgr.worker.loop import Worker

out = open(sys.argv[2], "a", buffering=1)

def work(job):
    out.write(f"ran {os.getpid()} {job.text} {sys._getframe(1).f_code.co_name}\\n")
    if job.text in ("5", "6", "7"):
        pid = os.fork()
        if pid == 0:  # the child comes back from the function: returns, exits or raises
            if job.text == "6":
                sys.exit(7)
            if job.text == "7":
                raise ValueError("raised in the child")
            return b"child"
        _, status = os.waitpid(pid, 0)
        out.write(f"exit {job.text} {os.waitstatus_to_exitcode(status)}\\n")
    return b"parent"

timeouts = {"forker": float(sys.argv[3])} if float(sys.argv[3]) else None
sys.exit(Worker([sys.argv[1]], {"forker": work}, timeouts=timeouts).run())
"""


@pytest.mark.parametrize("timeout", [0.0, 30.0], ids=["no-timeout", "timeout"])
@pytest.mark.parametrize("path", ["c", "python"])
def test_the_child_of_a_fork_in_a_job_leaves_without_serving(
    gearmand: Gearmand, tmp_path: Path, path: str, timeout: float
):
    if path == "c":
        pytest.importorskip("gearmgr._speedups", reason="the C extension is not built")
    log = tmp_path / "log.txt"
    with Client([gearmand.address]) as client:
        for i in range(20):
            client.submit("forker", str(i), background=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if path == "python":
        env["GEARMGR_PURE_PYTHON"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", FORKING_SCRIPT, gearmand.address, str(log), str(timeout)],
        env=env,
        start_new_session=True,  # the children a failing run leaves behind are killed with it
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def lines(kind: str) -> list[list[str]]:
            text = log.read_text() if log.exists() else ""
            return [ln.split()[1:] for ln in text.splitlines() if ln.startswith(kind)]

        wait_for(lambda: len(lines("exit")) == 3, 20, what="the three children to end")
        wait_for(lambda: len(lines("ran")) >= 20, 20, what="20 jobs")
        wait_for(lambda: function_status(gearmand.port)["forker"][0] == 0, 10, what="no job left")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        ran = lines("ran")
        assert {pid for pid, _, _ in ran} == {str(proc.pid)}  # no job ran in a child
        assert sorted(int(text) for _, text, _ in ran) == list(range(20))  # each job once
        assert sorted((int(t), int(c)) for t, c in lines("exit")) == [(5, 0), (6, 7), (7, 1)]
        if path == "c":
            assert all(caller == "_serve" for _, text, caller in ran if text in ("5", "6", "7"))
        else:
            assert {caller for _, _, caller in ran} == {"_job"}
        stderr = proc.stderr.read()  # type: ignore[union-attr]
        assert "raised in the child" in stderr and "JOB_NOT_FOUND" not in stderr
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]
