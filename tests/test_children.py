"""Child processes (gearmgr/children.py): reaping a child against a deadline, its wait status in
words; and the validation fork's blocking wait (gearmgr/validation.py) built on them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from gearmgr.children import reap, wait_status_text
from gearmgr.validation import Validation


def fork_child(code: str) -> int:
    """A child that does ``code`` ("exit 3", "ignore-term", "sleep"); returned once it is set up."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if code == "exit 3":
                os._exit(3)
            if code == "ignore-term":
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.write(ready_w, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.read(ready_r, 1)  # set up (or exited: end of file)
    os.close(ready_r)
    return pid


def test_reap_returns_the_status_of_a_child_that_exits() -> None:
    pid = fork_child("exit 3")
    status = reap(pid, 5.0)
    assert status is not None
    assert wait_status_text(status) == "exit status 3"


def test_reap_signals_the_child_and_returns_soon_after_it_exits() -> None:
    pid = fork_child("sleep")
    start = time.monotonic()
    status = reap(pid, 5.0, signal.SIGTERM)
    assert status is not None and wait_status_text(status) == "killed by SIGTERM"
    assert time.monotonic() - start < 2.0


def test_reap_kills_a_child_that_outlives_its_deadline() -> None:
    pid = fork_child("ignore-term")
    start = time.monotonic()
    status = reap(pid, 0.3, signal.SIGTERM)
    assert status is not None and wait_status_text(status) == "killed by SIGKILL"
    assert 0.3 <= time.monotonic() - start < 3.0
    assert not Path(f"/proc/{pid}").exists()


def test_reap_of_a_child_reaped_elsewhere_is_none() -> None:
    pid = fork_child("exit 3")
    os.waitpid(pid, 0)
    assert reap(pid, 1.0) is None


def test_validation_wait_gives_each_files_result(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text("def good(job):\n    return job\n")
    (tmp_path / "bad.py").write_text("raise RuntimeError('no database')\n")
    files = {"good": tmp_path / "good.py", "bad": tmp_path / "bad.py"}
    results = Validation(files, 10.0, None).wait()
    assert results["good"] is None
    assert "RuntimeError: no database (at bad.py:1)" in (results["bad"] or "")
