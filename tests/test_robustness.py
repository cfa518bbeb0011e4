"""Integration: regressions found in review. Each test is named after what it pins."""

from __future__ import annotations

import shutil
import signal
import socket
import threading
from pathlib import Path

import yaml

from gearmgr.wire.protocol import PacketType, encode
from tests.support import Gearmand, gearman_cli, wait_for


def queue_background(port: int, function: str, count: int) -> None:
    """Queue ``count`` background jobs in one write (pipelined SUBMIT_JOB_BG)."""
    packets = b"".join(
        encode(PacketType.SUBMIT_JOB_BG, function.encode(), f"u{i}".encode(), b"x")
        for i in range(count)
    )
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(packets)
        received = b""
        while received.count(b"\0RES") < count:  # one JOB_CREATED per job
            received += s.recv(65536)


def test_a_busy_server_does_not_starve_the_others(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    (workers_dir / "tick.py").write_text("import time\n\ndef tick(job):\n    time.sleep(0.005)\n")
    second = Gearmand(tmp_path).start()
    try:
        sup = supervisor_factory(
            {"servers": [gearmand.address, second.address], "include": ["tick", "reverse"]}
        )
        sup.wait_ready(gearmand.port, {"tick": 1, "reverse": 1})
        sup.wait_ready(second.port, {"tick": 1, "reverse": 1})
        queue_background(gearmand.port, "tick", 600)  # about 3 s of work on the first server
        out = gearman_cli(second.port, "-f", "tick", "x")  # the same process serves the second
        assert out.returncode == 0
        backlog = gearmand.status()["tick"][0]
        assert backlog > 100, "the second server's job waited for the first one's backlog"
    finally:
        second.stop()


def test_usr1_with_a_log_file_that_cannot_be_reopened_keeps_running(
    supervisor_factory, gearmand: Gearmand, tmp_path: Path
):
    logs = tmp_path / "logs"
    logs.mkdir()
    sup = supervisor_factory({"include": ["reverse"], "log_file": str(logs / "gearmgr.log")})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    workers = sup.worker_pids()
    shutil.rmtree(logs)
    sup.signal(signal.SIGUSR1)
    wait_for(lambda: "cannot reopen the log file" in sup.log(), what="the complaint")
    sup.assert_alive()
    assert sup.worker_pids() == workers
    assert gearman_cli(gearmand.port, "-f", "reverse", "ab").stdout.strip() == b"ba"


def test_reload_that_cannot_be_applied_keeps_the_running_config(
    supervisor_factory, gearmand: Gearmand
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    workers = sup.worker_pids()
    config = yaml.safe_load(sup.config_path.read_text())
    config["log_file"] = "/nonexistent/dir/gearmgr.log"
    sup.config_path.write_text(yaml.safe_dump(config))
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running one" in sup.log(), what="the error")
    assert "log_file: expected a file in an existing folder" in sup.log()
    config["log_file"] = None
    config["count"] = 1100
    sup.config_path.write_text(yaml.safe_dump(config))
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "gearmgr runs at most 1000" in sup.log(), what="the size error")
    sup.assert_alive()
    assert sup.worker_pids() == workers


def test_a_plan_too_large_is_a_configuration_error(supervisor_factory):
    sup = supervisor_factory({"include": ["reverse"], "count": 1100})
    assert sup.wait(timeout=30) == 2
    assert "gearmgr runs at most 1000" in sup.log()


def test_supervisor_does_not_spin_while_stopping(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["sleepy", "reverse"]})
    sup.wait_ready(gearmand.port, {"sleepy": 1, "reverse": 1})
    done = threading.Event()
    threading.Thread(
        target=lambda: (gearman_cli(gearmand.port, "-f", "sleepy", "2"), done.set()), daemon=True
    ).start()
    wait_for(lambda: gearmand.status().get("sleepy", (0, 0, 0))[1] == 1, what="job running")

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{sup.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks

    before = cpu_seconds()
    sup.signal(signal.SIGTERM)
    wait_for(lambda: "reverse#0) exited" in sup.log(), what="the idle worker gone")
    wait_for(done.is_set, timeout=10, what="the busy job done")
    spent = cpu_seconds() - before
    assert sup.wait() == 0
    assert spent < 0.5, f"the supervisor used {spent:.2f}s of CPU during a ~2s stop"


def test_replacement_that_cannot_load_keeps_the_old_process(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    old = sup.worker_pids("reverse")
    (workers_dir / "reverse.py").write_text("def reverse(job):\n    return (\n")
    config = yaml.safe_load(sup.config_path.read_text())
    config["max_jobs"] = 100  # a limit change would replace the process...
    sup.config_path.write_text(yaml.safe_dump(config))
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "fails to load" in sup.log(), what="the import error")
    wait_for(lambda: "reconciled" in sup.log(), what="the reload done")
    # ...but its file no longer loads, so the running one keeps serving.
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"
    assert sup.worker_pids("reverse") == old


def test_a_slow_import_on_reload_does_not_hold_up_the_supervisor(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    import os
    import time

    sup = supervisor_factory({"include": ["reverse", "slowimport"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    (workers_dir / "slowimport.py").write_text(
        "import time\ntime.sleep(4)\n\ndef slowimport(job):\n    return 'late'\n"
    )
    sup.signal(signal.SIGHUP)  # validation now imports it in a fork, for about 4 s
    victim = sup.worker_pids("reverse")[0]
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    # Meanwhile the supervisor answers, reaps and replaces a killed worker.
    wait_for(lambda: (p := sup.worker_pids("reverse")) and victim not in p, what="a replacement")
    assert time.monotonic() - started < 2.5
    sup.wait_ready(gearmand.port, {"reverse": 1, "slowimport": 1}, timeout=20)
    assert gearman_cli(gearmand.port, "-f", "slowimport", "x").stdout.strip() == b"late"


def test_a_reload_during_a_slow_check_is_applied_after_it(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    second = Gearmand(tmp_path).start()
    try:
        sup = supervisor_factory({"include": ["reverse", "slowimport"]})
        sup.wait_ready(gearmand.port, {"reverse": 1})
        (workers_dir / "slowimport.py").write_text(
            "import time\ntime.sleep(3)\n\ndef slowimport(job):\n    return 'late'\n"
        )
        sup.signal(signal.SIGHUP)  # a check of about 3 s begins
        wait_for(lambda: sup.status(), what="the supervisor answering")
        config = yaml.safe_load(sup.config_path.read_text())
        config["servers"] = [gearmand.address, second.address]
        sup.config_path.write_text(yaml.safe_dump(config))
        sup.signal(signal.SIGHUP)  # comes during the check: applied once it is done
        sup.wait_ready(second.port, {"reverse": 1, "slowimport": 1}, timeout=30)
        assert gearman_cli(second.port, "-f", "reverse", "ab").stdout.strip() == b"ba"
    finally:
        second.stop()
