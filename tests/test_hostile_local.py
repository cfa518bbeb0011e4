"""Regression tests from an attacker's run against the supervisor: worker files, config files,
jobs and signals that took it down, blocked its loop or made it fork in a loop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from gearmgr.ops.control import ControlError
from tests.support import Gearmand, gearman_cli, pid_alive, wait_for
from tests.support import gearmgr_reload as reload


def test_a_worker_file_that_is_a_symlink_loop_is_skipped_not_fatal(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": ["reverse", "loop"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    os.symlink("loop.py", workers_dir / "loop.py")
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "symlink loop" in sup.log(), timeout=10, what="the loop reported")
    sup.assert_alive()
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"
    check = subprocess.run(
        [sys.executable, "-m", "gearmgr", "check", "-c", str(sup.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in check.stdout + check.stderr
    assert "symlink loop" in check.stdout + check.stderr


def test_a_config_that_became_a_fifo_does_not_block_the_loop(
    supervisor_factory, gearmand: Gearmand
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    sup.config_path.rename(sup.config_path.with_suffix(".bak"))
    os.mkfifo(sup.config_path)
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "not a regular file" in sup.log(), timeout=10, what="the reload refused")
    started = time.monotonic()
    assert sup.status()["pid"] == sup.pid
    assert time.monotonic() - started < 1.0
    sup.config_path.unlink()
    sup.config_path.with_suffix(".bak").rename(sup.config_path)


def test_a_job_whose_exception_cannot_be_printed_fails_and_the_process_lives(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    (workers_dir / "odd.py").write_text(
        "class Odd(Exception):\n"
        "    def __str__(self):\n"
        "        raise RuntimeError('no')\n\n"
        "def odd(job):\n"
        "    if job.text == 'surrogate':\n"
        "        raise ValueError('cannot parse ' + '\\udcff.csv')\n"
        "    raise Odd()\n"
    )
    sup = supervisor_factory({"include": ["odd"]})
    sup.wait_ready(gearmand.port, {"odd": 1})
    before = sup.worker_pids()
    for text in ("surrogate", "broken"):
        done = gearman_cli(gearmand.port, "-f", "odd", text)
        assert done.returncode != 0 or b"fail" in done.stdout.lower() + done.stderr.lower()
    assert sup.worker_pids() == before
    assert re.search(r"failed: ValueError: cannot parse \\udcff\.csv", sup.log())
    assert "Odd: (its message cannot be shown)" in sup.log()


def test_a_host_name_no_resolver_accepts_is_a_config_error(tmp_path: Path):
    config = tmp_path / "gearmgr.yaml"
    config.write_text(f'servers: ["{"a" * 64}.example:4730"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "gearmgr", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not a valid host name" in done.stderr and "Traceback" not in done.stderr


def test_a_worker_file_that_touches_itself_when_imported_does_not_loop_auto_reload(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    (workers_dir / "toucher.py").write_text(
        "import os\nos.utime(__file__)\n\ndef toucher(job):\n    return 'ok'\n"
    )
    sup = supervisor_factory({"include": ["toucher"], "auto_reload": True})
    sup.wait_ready(gearmand.port, {"toucher": 1})
    first = sup.worker_pids()
    time.sleep(3.0)  # a window in which a loop would replace the process again and again
    assert sup.worker_pids() == first
    assert sup.status()["functions"]["toucher"]["restarts"] == {}


def test_a_reload_to_a_log_file_that_cannot_be_opened_keeps_the_old_one(
    supervisor_factory, gearmand: Gearmand, tmp_path: Path
):
    log = tmp_path / "first.log"
    sup = supervisor_factory({"include": ["reverse"], "log_file": str(log)})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    text = sup.config_path.read_text()
    sup.config_path.write_text(text.replace(str(log), str(tmp_path)))  # a folder, not a file
    reload(sup)
    sup.config_path.write_text(text)
    sup.signal(signal.SIGHUP)  # reloading the good config is logged in the old file
    wait_for(lambda: log.read_text().count("reconciled") >= 1, timeout=10, what="logging goes on")
    sup.assert_alive()


def test_restart_of_a_function_whose_file_fails_to_load_is_refused(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    (workers_dir / "reverse.py").write_text("def reverse(job):\n    return job.text[::-1\n")
    reload(sup)
    from gearmgr.ops.control import request

    try:
        request(sup.workdir / "gearmgr.sock", "restart", function="reverse")
        refused = ""
    except ControlError as exc:
        refused = str(exc)
    assert "fails to load" in refused and "SyntaxError" in refused


def test_helpers_a_worker_file_starts_at_import_end_with_the_check(
    tmp_path: Path, workers_dir: Path
):
    marker = tmp_path / "helper.pid"
    (workers_dir / "spawner.py").write_text(
        "import subprocess\n"
        f"p = subprocess.Popen(['sleep', '300'])\nopen({str(marker)!r}, 'w').write(str(p.pid))\n\n"
        "def spawner(job):\n    return 'ok'\n"
    )
    config = tmp_path / "gearmgr.yaml"
    config.write_text("worker_dirs: [workers]\ninclude: [spawner]\n")
    done = subprocess.run(
        [sys.executable, "-m", "gearmgr", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    helper = int(marker.read_text())
    wait_for(lambda: not pid_alive(helper), timeout=5, what="the import's helper gone")
