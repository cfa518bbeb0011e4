"""Integration: recycling, timeouts, crashes, server outages, reloads and signals, against a
real gearmand with real forks and real signals."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from gearmgr.wire.client import Client, JobFailed
from tests.support import Gearmand, children_of, gearman_cli, pid_alive, wait_for


def submit_pid(port: int, function: str = "pid", data: str = "x") -> int:
    out = gearman_cli(port, "-f", function, data)
    assert out.returncode == 0, out
    return int(out.stdout.split()[0])


def test_max_jobs_recycles_between_jobs(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["pid"], "max_jobs": 3})
    sup.wait_ready(gearmand.port, {"pid": 1})
    pids = [submit_pid(gearmand.port) for _ in range(3)]
    assert len(set(pids)) == 1
    fourth = submit_pid(gearmand.port)
    assert fourth != pids[0]
    assert not pid_alive(pids[0])
    assert sup.status()["functions"]["pid"]["restarts"] == {"max_jobs": 1}


def test_max_lifetime_recycles_an_idle_process(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["pid"], "max_lifetime": "1s"})
    sup.wait_ready(gearmand.port, {"pid": 1})
    first = wait_for(lambda: sup.worker_pids("pid"), what="a worker")
    wait_for(lambda: (p := sup.worker_pids("pid")) and p != first, timeout=10, what="a new pid")
    assert sup.status()["functions"]["pid"]["restarts"].get("max_lifetime", 0) >= 1
    assert submit_pid(gearmand.port) not in first


def test_max_memory_recycles_after_the_job(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    (workers_dir / "hog.py").write_text(
        "import os\nHELD = []\n\ndef hog(job):\n"
        "    HELD.append(bytearray(int(job.text) * 1024 * 1024))\n"
        "    return str(os.getpid())\n"
    )
    sup = supervisor_factory({"include": ["hog"], "max_memory": "80MiB"})
    sup.wait_ready(gearmand.port, {"hog": 1})
    small = submit_pid(gearmand.port, "hog", "1")
    assert submit_pid(gearmand.port, "hog", "1") == small  # under the limit: same process
    assert submit_pid(gearmand.port, "hog", "100") == small  # the job completes...
    assert submit_pid(gearmand.port, "hog", "1") != small  # ...then the process is replaced
    assert sup.status()["functions"]["hog"]["restarts"] == {"max_memory": 1}


def test_max_memory_below_a_fresh_process_does_not_loop(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["pid"], "max_memory": "1KiB"})
    sup.wait_ready(gearmand.port, {"pid": 1})
    pids = {submit_pid(gearmand.port) for _ in range(3)}
    assert len(pids) == 1
    assert "memory recycling is off for this process" in sup.log()


def test_timeout_fails_the_job_fast_and_replaces_the_process(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    runs = tmp_path / "runs"
    (workers_dir / "stuck.py").write_text(
        "import time\n\ndef stuck(job):\n"
        f"    with open({str(runs)!r}, 'a') as f:\n"
        "        f.write('run\\n')\n"
        "    time.sleep(30)\n"
    )
    sup = supervisor_factory(
        {"include": ["stuck"], "dedicated_count": 2, "functions": {"stuck": {"timeout": "1s"}}}
    )
    sup.wait_ready(gearmand.port, {"stuck": 2})
    before = set(sup.worker_pids("stuck"))
    started = time.monotonic()
    with Client([gearmand.address]) as client, pytest.raises(JobFailed) as failed:
        client.submit("stuck", "x", timeout=20)
    assert time.monotonic() - started < 5
    assert "TimeoutError" in str(failed.value)
    # gearmand has forgotten the job (it is not re-queued onto the other process)...
    wait_for(lambda: gearmand.status().get("stuck", (1,))[0] == 0, what="the job gone")
    sup.wait_ready(gearmand.port, {"stuck": 2})
    assert runs.read_text() == "run\n"
    # ...and the stuck process was replaced.
    wait_for(lambda: len(set(sup.worker_pids("stuck")) - before) == 1, what="a replacement")
    status = sup.status()["functions"]["stuck"]
    assert status["restarts"] == {"timeout": 1}
    assert status["jobs_failed"] == 1


def test_crash_loop_backs_off(supervisor_factory, gearmand: Gearmand, workers_dir: Path):
    (workers_dir / "dies.py").write_text("import os\nos._exit(9)\n")
    sup = supervisor_factory({"include": ["dies", "pid"]})
    sup.wait_ready(gearmand.port, {"pid": 1})
    wait_for(lambda: sup.log().count("exited with status 9") >= 4, timeout=20, what="4 deaths")
    delays = [
        float(line.rsplit("restarting in ", 1)[1].rstrip("s"))
        for line in sup.log().splitlines()
        if "exited with status 9" in line and "restarting in" in line
    ]
    assert len(delays) >= 2 and delays[-1] > delays[0], delays
    # The other function is served all along.
    assert submit_pid(gearmand.port) > 0


def test_job_of_a_killed_process_completes_on_another(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["sleepy"], "dedicated_count": 2})
    sup.wait_ready(gearmand.port, {"sleepy": 2})
    result: dict[str, bytes] = {}

    def submit() -> None:
        with Client([gearmand.address]) as client:
            result["out"] = client.submit("sleepy", "1", timeout=30)

    thread = threading.Thread(target=submit)
    thread.start()

    def busy_pid() -> int:
        status = sup.try_status() or {"processes": []}
        return next((p["pid"] for p in status["processes"] if p["state"] == "busy"), 0)

    victim = wait_for(busy_pid, what="a busy process")
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=30)
    assert result.get("out") == b"slept 1"
    assert "killed by SIGKILL" in sup.log()


def test_workers_reconnect_after_a_server_restart(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    gearmand.stop()
    wait_for(lambda: "unavailable" in sup.log(), what="the outage in the log")
    wait_for(lambda: f"job server {gearmand.address} is down" in sup.log(), what="the supervisor")
    gearmand.start()
    sup.wait_ready(gearmand.port, {"reverse": 1})
    wait_for(lambda: f"job server {gearmand.address} is back" in sup.log(), what="back")
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"


def test_every_process_serves_every_server(supervisor_factory, gearmand: Gearmand, tmp_path: Path):
    second = Gearmand(tmp_path).start()
    try:
        sup = supervisor_factory(
            {"servers": [gearmand.address, second.address], "include": ["reverse"]}
        )
        sup.wait_ready(gearmand.port, {"reverse": 1})
        sup.wait_ready(second.port, {"reverse": 1})
        gearmand.stop()
        assert gearman_cli(second.port, "-f", "reverse", "xy").stdout.strip() == b"yx"
        gearmand.start()
        sup.wait_ready(gearmand.port, {"reverse": 1})
        assert gearman_cli(gearmand.port, "-f", "reverse", "ab").stdout.strip() == b"ba"
    finally:
        second.stop()


def test_hup_with_a_new_server_list_reconnects_every_process(
    supervisor_factory, gearmand: Gearmand, tmp_path: Path
):
    second = Gearmand(tmp_path).start()
    try:
        sup = supervisor_factory({"include": ["reverse"]})
        sup.wait_ready(gearmand.port, {"reverse": 1})
        import yaml

        config = yaml.safe_load(sup.config_path.read_text())
        config["servers"] = [gearmand.address, second.address]
        sup.config_path.write_text(yaml.safe_dump(config))
        sup.signal(signal.SIGHUP)
        sup.wait_ready(second.port, {"reverse": 1})
        assert gearman_cli(second.port, "-f", "reverse", "xy").stdout.strip() == b"yx"
    finally:
        second.stop()


def test_hup_reloads_the_config(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse", "pid"]})
    sup.wait_ready(gearmand.port, {"reverse": 1, "pid": 1})
    pid_before = sup.worker_pids("pid")
    import yaml

    config = yaml.safe_load(sup.config_path.read_text())
    config["functions"] = {"reverse": {"dedicated_count": 3}}
    sup.config_path.write_text(yaml.safe_dump(config))
    reverse_before = sup.worker_pids("reverse")
    sup.signal(signal.SIGHUP)
    sup.wait_ready(gearmand.port, {"reverse": 3})
    assert sup.worker_pids("pid") == pid_before  # unchanged processes are left alone
    assert set(reverse_before) < set(sup.worker_pids("reverse"))  # two added, none replaced
    # A config that does not load is logged and the running one kept.
    sup.config_path.write_text("count: [\n")
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running one" in sup.log(), what="the reload error")
    assert len(sup.worker_pids("reverse")) == 3
    assert gearman_cli(gearmand.port, "-f", "reverse", "ok").stdout.strip() == b"ko"


def test_hup_replaces_changed_limits_one_by_one(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["pid"], "dedicated_count": 3})
    sup.wait_ready(gearmand.port, {"pid": 3})
    before = set(sup.worker_pids("pid"))
    import yaml

    config = yaml.safe_load(sup.config_path.read_text())
    config["max_jobs"] = 100
    sup.config_path.write_text(yaml.safe_dump(config))
    registered: list[int] = []

    def all_replaced() -> bool:
        registered.append(gearmand.status().get("pid", (0, 0, 0))[2])
        return not set(sup.worker_pids("pid")) & before

    sup.signal(signal.SIGHUP)
    wait_for(all_replaced, timeout=20, interval=0.005, what="all replaced")
    sup.wait_ready(gearmand.port, {"pid": 3})
    # The pool never shrank below its size, and never had more than one extra process.
    assert min(registered) >= 3 and max(registered) <= 4, registered
    assert sup.status()["functions"]["pid"]["restarts"] == {"reload": 3}


def test_auto_reload_picks_up_changed_added_and_removed_files(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": [], "exclude": ["sleepy"], "auto_reload": True})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    wait_for(lambda: "auto_reload: watching" in sup.log(), what="the watcher")

    def answer(data: str = "abc") -> bytes:
        return gearman_cli(gearmand.port, "-f", "reverse", data).stdout.strip()

    (workers_dir / "reverse.py").write_text("def reverse(job):\n    return job.text.upper()\n")
    saved = time.monotonic()
    wait_for(lambda: answer() == b"ABC", timeout=10, what="the new code")
    assert time.monotonic() - saved < 5
    # A change that does not import keeps the old processes.
    (workers_dir / "reverse.py").write_text("def reverse(job):\n    return (\n")
    wait_for(lambda: "fails to load" in sup.log(), what="the import error")
    assert answer("xyz") == b"XYZ"
    # Added and removed files.
    (workers_dir / "shout.py").write_text("def shout(job):\n    return job.text + '!'\n")
    sup.wait_ready(gearmand.port, {"shout": 1})
    assert gearman_cli(gearmand.port, "-f", "shout", "hi").stdout.strip() == b"hi!"
    (workers_dir / "shout.py").unlink()
    wait_for(lambda: gearmand.status().get("shout", (0, 0, 0))[2] == 0, what="shout drained")


def test_second_term_stops_at_once(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["sleepy"], "graceful_timeout": "60s"})
    sup.wait_ready(gearmand.port, {"sleepy": 1})
    proc = gearman_cli_background(gearmand.port, "sleepy", "30")
    wait_for(lambda: gearmand.status().get("sleepy", (0, 0, 0))[1] == 1, what="job running")
    workers = children_of(sup.pid)
    sup.signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in sup.log(), what="the stop")
    started = time.monotonic()
    sup.signal(signal.SIGTERM)
    assert sup.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert not any(pid_alive(p) for p in workers)
    proc.kill()


def test_quit_stops_at_once(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["sleepy"], "graceful_timeout": "60s"})
    sup.wait_ready(gearmand.port, {"sleepy": 1})
    proc = gearman_cli_background(gearmand.port, "sleepy", "30")
    wait_for(lambda: gearmand.status().get("sleepy", (0, 0, 0))[1] == 1, what="job running")
    workers = children_of(sup.pid)
    sup.signal(signal.SIGQUIT)
    sup.wait(timeout=10)
    assert not any(pid_alive(p) for p in workers)
    proc.kill()


def test_workers_exit_when_the_supervisor_is_killed(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"], "dedicated_count": 2})
    sup.wait_ready(gearmand.port, {"reverse": 2})
    workers = children_of(sup.pid)
    assert len(workers) == 2
    sup.signal(signal.SIGKILL)
    sup.wait(timeout=10)
    wait_for(lambda: not any(pid_alive(p) for p in workers), timeout=10, what="orphans gone")


def test_usr1_reopens_the_log_file(supervisor_factory, gearmand: Gearmand, tmp_path: Path):
    log = tmp_path / "gearmgr.log"
    sup = supervisor_factory({"include": ["reverse"], "log_file": str(log)})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    workers = sup.worker_pids()
    wait_for(lambda: log.exists() and "starting" in log.read_text(), what="the log file")
    rotated = tmp_path / "gearmgr.log.1"
    log.rename(rotated)
    sup.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists() and "log file reopened" in log.read_text(), what="a new file")
    assert "log file reopened" not in rotated.read_text()
    assert sup.worker_pids() == workers  # workers reopen too; USR1 does not kill them
    assert gearman_cli(gearmand.port, "-f", "reverse", "ab").stdout.strip() == b"ba"


def gearman_cli_background(port: int, function: str, data: str):
    import subprocess

    from tests.support import which

    return subprocess.Popen(
        [which("gearman"), "-h", "127.0.0.1", "-p", str(port), "-f", function, data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_restart_command_replaces_one_functions_processes(supervisor_factory, gearmand: Gearmand):
    import subprocess
    import sys

    sup = supervisor_factory({"include": ["reverse", "pid"], "dedicated_count": 2})
    sup.wait_ready(gearmand.port, {"reverse": 2, "pid": 2})
    reverse_before, pid_before = set(sup.worker_pids("reverse")), sup.worker_pids("pid")
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "restart", "reverse", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"replacing 2 processes of reverse" in proc.stdout
    wait_for(lambda: not set(sup.worker_pids("reverse")) & reverse_before, what="replaced")
    assert sup.worker_pids("pid") == pid_before
    unknown = subprocess.run(
        [sys.executable, "-m", "gearmgr", "restart", "nope", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert unknown.returncode == 1 and b"no process serves function 'nope'" in unknown.stderr
    assert b"; served: " in unknown.stderr and b"reverse" in unknown.stderr
