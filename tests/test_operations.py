"""Integration: what ops rely on: metrics, systemd notifications, pid file, privileges, logs,
and the embedded gearmand."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support import (
    Gearmand,
    RunningSupervisor,
    free_port,
    gearman_cli,
    pid_alive,
    wait_for,
)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def test_metrics_count_jobs_across_processes_and_restarts(supervisor_factory, gearmand: Gearmand):
    port = free_port()
    sup = supervisor_factory(
        {"include": ["reverse", "boom"], "max_jobs": 2, "metrics": f"127.0.0.1:{port}"}
    )
    sup.wait_ready(gearmand.port, {"reverse": 1, "boom": 1})
    for _ in range(3):  # the third job runs in a fresh process: counts must survive recycling
        assert gearman_cli(gearmand.port, "-f", "reverse", "ab").returncode == 0
        sup.wait_ready(gearmand.port, {"reverse": 1})
    gearman_cli(gearmand.port, "-f", "boom", "x")
    text = wait_for(
        lambda: (t := scrape(port)) and 'reason="max_jobs"' in t and t, what="the restart"
    )
    assert 'gearmgr_jobs_total{function="reverse",outcome="complete"} 3.0' in text
    assert 'gearmgr_jobs_total{function="boom",outcome="fail"} 1.0' in text
    assert 'gearmgr_job_duration_seconds_count{function="reverse"} 3.0' in text
    assert 'gearmgr_job_duration_seconds_bucket{function="reverse",le="+Inf"} 3.0' in text
    assert 'gearmgr_worker_restarts_total{function="reverse",reason="max_jobs"} 1.0' in text
    assert 'gearmgr_workers{function="reverse",state="idle"} 1.0' in text
    assert 'gearmgr_worker_rss_bytes{slot="reverse#0"}' in text


def test_systemd_notifications(supervisor_factory, gearmand: Gearmand, tmp_path: Path):
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(15)
    sup = supervisor_factory(
        {"include": ["reverse", "pid"]},
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"},
    )
    messages: list[str] = []

    def receive_until(text: str) -> None:
        while not any(text in m for m in messages):
            messages.append(listener.recv(4096).decode())

    receive_until("READY=1")
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=2 processes" in ready
    # READY only once both processes are registered with gearmand.
    assert gearmand.status()["reverse"][2] == 1 and gearmand.status()["pid"][2] == 1
    receive_until("WATCHDOG=1")
    sup.signal(signal.SIGTERM)
    receive_until("STOPPING=1")
    assert sup.wait() == 0
    listener.close()


def test_systemd_ready_with_one_server_down_and_a_broken_file(
    supervisor_factory, gearmand: Gearmand, tmp_path: Path, workers_dir: Path
):
    (workers_dir / "broken.py").write_text("import no_such_module_here\n")
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(20)
    down = f"127.0.0.1:{free_port()}"
    sup = supervisor_factory(
        {"include": ["reverse", "broken"], "servers": [gearmand.address, down]},
        env={"NOTIFY_SOCKET": str(path)},
    )
    while "READY=1" not in (message := listener.recv(4096).decode()):
        pass
    assert " process" in message and "broken: broken" in message
    assert f"job server {down} is down" in sup.log()
    listener.close()


def test_pid_file_locks_out_a_second_instance(
    supervisor_factory, gearmand: Gearmand, tmp_path: Path
):
    pid_file = tmp_path / "gearmgr.pid"
    sup = supervisor_factory({"include": ["reverse"], "pid_file": str(pid_file)})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    assert pid_file.read_text().strip() == str(sup.pid)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = RunningSupervisor(
        second_dir,
        {
            "servers": [gearmand.address],
            "worker_dirs": [str(tmp_path / "workers")],
            "pid_file": str(pid_file),
        },
    ).start()
    assert second.wait(timeout=20) == 1
    assert f"already running (pid {sup.pid})" in second.log()
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    assert not pid_file.exists()


def test_refuses_root_without_a_user(tmp_path: Path, workers_dir: Path, gearmand: Gearmand):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    cfg = tmp_path / "gearmgr.yaml"
    cfg.write_text(f"servers: ['{gearmand.address}']\ncontrol_socket: s.sock\n")
    env = {k: v for k, v in os.environ.items() if k != "GEARMGR_ALLOW_ROOT"}
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "run", "-c", str(cfg)],
        capture_output=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 2
    assert b"refusing to run workers as root" in proc.stderr


def test_drops_privileges_to_user_and_group(gearmand: Gearmand):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import grp

    user = pwd.getpwnam("nobody")
    gid = grp.getgrnam("nogroup").gr_gid
    base = Path("/tmp") / f"gearmgr-priv-{os.getpid()}"  # readable by nobody, unlike tmp_path
    base.mkdir(mode=0o755, exist_ok=True)
    sup = None
    try:
        (base / "workers").mkdir(mode=0o755, exist_ok=True)
        (base / "workers" / "ids.py").write_text(
            "import os\n\ndef ids(job):\n"
            "    return f'{os.getuid()} {os.getgid()} {sorted(os.getgroups())}'\n"
        )
        sup = RunningSupervisor(
            base,
            {
                "servers": [gearmand.address],
                "worker_dirs": ["workers"],
                "user": "nobody",
                "group": "nogroup",
                "log_file": str(base / "gearmgr.log"),
            },
        ).start()
        sup.wait_ready(gearmand.port, {"ids": 1})
        uid, got_gid, groups = (
            gearman_cli(gearmand.port, "-f", "ids", "x").stdout.decode().split(" ", 2)
        )
        assert (uid, got_gid) == (str(user.pw_uid), str(gid))
        assert "0" not in groups.strip("[]\n").split(", ")  # root's groups are gone
        sup.signal(signal.SIGTERM)
        assert sup.wait() == 0
    finally:
        if sup is not None:
            sup.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_worker_print_and_logging_go_to_the_log_file(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    (workers_dir / "chatty.py").write_text(
        "import logging\n\n"
        "def chatty(job):\n"
        "    print('printed by worker code', flush=True)\n"
        "    job.log.warning('logged by worker code')\n"
        "    logging.getLogger('mylib').warning('logged by a library')\n"
        "    return 'ok'\n"
    )
    log = tmp_path / "gearmgr.log"
    sup = supervisor_factory({"include": ["chatty"], "log_file": str(log)})
    sup.wait_ready(gearmand.port, {"chatty": 1})
    assert gearman_cli(gearmand.port, "-f", "chatty", "x").returncode == 0
    text = wait_for(
        lambda: (t := log.read_text()) and "printed by worker code" in t and t, what="output"
    )
    line = next(ln for ln in text.splitlines() if "logged by worker code" in ln)
    assert "chatty" in line and "H:" in line  # the function and the job handle
    workers = [p["pid"] for p in sup.status()["processes"]]
    assert f"[{workers[0]}]" in line
    library = next(ln for ln in text.splitlines() if "logged by a library" in ln)
    assert f"gearmgr[{workers[0]}] worker chatty:" in library


def test_embedded_gearmand_serves_and_stops_last(tmp_path: Path, workers_dir: Path):
    port = free_port()
    sup = RunningSupervisor(
        tmp_path,
        {"servers": [f"127.0.0.1:{port}"], "embedded_server": True, "include": ["reverse"]},
    ).start()
    sup.wait_ready(port, {"reverse": 1}, timeout=20)
    assert gearman_cli(port, "-f", "reverse", "hello").stdout.strip() == b"olleh"
    assert (tmp_path / "gearmgr-queue.sqlite").exists()
    gearmand_pid = int((tmp_path / "gearmgr-gearmand.pid").read_text())
    # Killing the embedded server: it is restarted and the workers reconnect.
    os.kill(gearmand_pid, signal.SIGKILL)
    wait_for(lambda: "embedded gearmand killed by SIGKILL" in sup.log(), what="the restart")
    sup.wait_ready(port, {"reverse": 1}, timeout=20)
    assert gearman_cli(port, "-f", "reverse", "again").stdout.strip() == b"niaga"
    new_pid = int((tmp_path / "gearmgr-gearmand.pid").read_text())
    sup.signal(signal.SIGINT)
    assert sup.wait() == 0
    assert not pid_alive(new_pid)


def test_embedded_background_jobs_survive_a_crash(tmp_path: Path, workers_dir: Path):
    port = free_port()
    target = tmp_path / "ran"
    config = {
        "servers": [f"127.0.0.1:{port}"],
        "embedded_server": True,
        "include": ["touch"],
        "dedicated_count": 0,
        "functions": {"touch": {"dedicated_count": 0}},
    }
    sup = RunningSupervisor(tmp_path, config).start()
    wait_for(lambda: "answers on" in sup.log(), timeout=20, what="gearmand")
    for i in range(3):
        assert gearman_cli(port, "-b", "-f", "touch", f"{target}{i}").returncode == 0
    gearmand_pid = int((tmp_path / "gearmgr-gearmand.pid").read_text())
    sup.signal(signal.SIGKILL)  # the supervisor dies; gearmand goes with it (parent death)
    sup.wait()
    wait_for(lambda: not pid_alive(gearmand_pid), what="gearmand gone")
    config["functions"] = {"touch": {"dedicated_count": 1}}
    sup2 = RunningSupervisor(tmp_path, config).start()
    wait_for(lambda: all(Path(f"{target}{i}").exists() for i in range(3)), timeout=20)
    sup2.stop()


def test_embedded_without_gearmand_is_a_clear_error(tmp_path: Path, workers_dir: Path):
    missing = tmp_path / "no-such-gearmand"
    sup = RunningSupervisor(
        tmp_path,
        {"servers": [f"127.0.0.1:{free_port()}"], "embedded_server": True},
        env={"GEARMGR_GEARMAND": str(missing)},
    ).start()
    assert sup.wait(timeout=20) == 1
    assert f"GEARMGR_GEARMAND={missing} is not an executable file" in sup.log()


def test_idle_clients_do_not_stall_the_supervisor(supervisor_factory, gearmand: Gearmand):
    import time

    port = free_port()
    sup = supervisor_factory({"include": ["reverse"], "metrics": f"127.0.0.1:{port}"})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    control = socket.socket(socket.AF_UNIX)
    control.connect(str(sup.workdir / "gearmgr.sock"))
    started = time.monotonic()
    assert sup.status()["pid"] == sup.pid
    assert "gearmgr_jobs_total" in scrape(port)
    assert time.monotonic() - started < 1.5
    for s in [*silent, control]:
        s.close()


def test_embedded_gearmand_that_fails_to_start_is_a_clear_error(tmp_path: Path, workers_dir: Path):
    fake = tmp_path / "fake-gearmand"
    fake.write_text("#!/bin/sh\necho 'could not bind: Address already in use' >&2\nexit 1\n")
    fake.chmod(0o755)
    sup = RunningSupervisor(
        tmp_path,
        {"servers": [f"127.0.0.1:{free_port()}"], "embedded_server": True},
        env={"GEARMGR_GEARMAND": str(fake)},
    ).start()
    assert sup.wait(timeout=20) == 1
    assert "embedded gearmand exited at start (could not bind: Address already in use)" in sup.log()
