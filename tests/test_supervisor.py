"""Integration: `gearmgr run` with real forked workers against a real gearmand.

Jobs are submitted with the C `gearman` tool (gearman-tools) and gearmgr's own client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from gearmgr.wire.client import Client, JobFailed
from tests.support import Gearmand, children_of, gearman_cli, pid_alive, wait_for


def test_results_from_the_c_tool_and_the_python_client(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({})
    sup.wait_ready(gearmand.port, {"reverse": 1, "counter": 1, "boom": 1})
    out = gearman_cli(gearmand.port, "-f", "reverse", "hello")
    assert out.returncode == 0
    assert out.stdout.strip() == b"olleh"
    with Client([gearmand.address]) as client:
        assert client.submit("reverse", "héllo ☃") == "☃ olléh".encode()


def test_class_worker_keeps_state_across_jobs(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["counter"]})
    sup.wait_ready(gearmand.port, {"counter": 1})
    with Client([gearmand.address]) as client:
        assert [client.submit("counter", "x") for _ in range(3)] == [b"1", b"2", b"3"]


def test_exception_fails_the_job_and_the_process_lives_on(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["boom", "pid"], "count": 1, "dedicated_count": 0})
    sup.wait_ready(gearmand.port, {"boom": 1, "pid": 1})
    with Client([gearmand.address]) as client:
        before = client.submit("pid", "")
        try:
            client.submit("boom", "x")
        except JobFailed as exc:
            assert "ValueError: bad input: x" in str(exc)
        else:
            raise AssertionError("the job should have failed")
        assert client.submit("pid", "") == before  # same process
    out = gearman_cli(gearmand.port, "-f", "boom", "y")
    assert out.returncode != 0
    assert b"ValueError: bad input: y" in out.stdout + out.stderr
    status = sup.status()
    assert status["functions"]["boom"]["jobs_failed"] == 2
    assert "ValueError: bad input: x" in sup.log()


def test_background_jobs_run(supervisor_factory, gearmand: Gearmand, tmp_path: Path):
    sup = supervisor_factory({"include": ["touch"]})
    sup.wait_ready(gearmand.port, {"touch": 1})
    target = tmp_path / "bg-from-c"
    out = gearman_cli(gearmand.port, "-b", "-f", "touch", str(target))
    assert out.returncode == 0
    target2 = tmp_path / "bg-from-python"
    with Client([gearmand.address]) as client:
        handle = client.submit("touch", str(target2), background=True)
    assert handle.startswith("H:")
    wait_for(lambda: target.exists() and target2.exists(), what="background jobs to run")


def test_term_with_a_job_in_flight_delivers_the_result(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["sleepy"]})
    sup.wait_ready(gearmand.port, {"sleepy": 1})
    result: dict[str, bytes] = {}

    def submit() -> None:
        with Client([gearmand.address]) as client:
            result["out"] = client.submit("sleepy", "1.5")

    thread = threading.Thread(target=submit)
    thread.start()
    wait_for(lambda: gearmand.status().get("sleepy", (0, 0, 0))[1] == 1, what="job running")
    workers = children_of(sup.pid)
    assert workers
    sup.signal(signal.SIGTERM)
    assert sup.wait(timeout=20) == 0
    thread.join(timeout=10)
    assert result.get("out") == b"slept 1.5"
    assert not any(pid_alive(p) for p in workers), "a worker outlived the supervisor"


def test_term_while_idle_is_quick(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"], "dedicated_count": 3})
    sup.wait_ready(gearmand.port, {"reverse": 3})
    sup.signal(signal.SIGTERM)
    assert sup.wait(timeout=5) == 0
    wait_for(lambda: gearmand.status().get("reverse", (0, 0, 0))[2] == 0, what="unregistered")


def test_broken_worker_file_does_not_take_the_others_down(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    (workers_dir / "broken.py").write_text("import no_such_module_here\n")
    sup = supervisor_factory({"include": ["reverse", "broken"], "count": 1})
    sup.wait_ready(gearmand.port, {"reverse": 2})
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"
    wait_for(lambda: "ModuleNotFoundError" in sup.log(), what="the error in the log")
    log = sup.log()
    assert "broken.py" in log and "No module named 'no_such_module_here'" in log
    # The dedicated slot of the broken function is retried, with a growing delay: no storm.
    wait_for(lambda: sup.log().count("none of its worker files could be loaded") >= 3, timeout=15)
    attempts = sup.log().count("none of its worker files could be loaded")
    assert attempts < 10, f"{attempts} restarts within seconds: a fork storm"
    # Fixing the file lets the retry pick it up without a reload.
    (workers_dir / "broken.py").write_text("def broken(job):\n    return 'fixed'\n")
    # Its dedicated process and then the shared process (which left it out) serve it.
    wait_for(
        lambda: gearmand.status().get("broken", (0, 0, 0))[2] >= 2, timeout=30, what="fixed file"
    )
    assert gearman_cli(gearmand.port, "-f", "broken", "x").stdout.strip() == b"fixed"
    assert "worker file for broken loads again" in sup.log()


def test_killed_worker_is_replaced_and_logged(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["pid"]})
    sup.wait_ready(gearmand.port, {"pid": 1})
    with Client([gearmand.address]) as client:
        first = int(client.submit("pid", ""))
        import os

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: "killed by SIGKILL" in sup.log(), what="the death in the log")
        sup.wait_ready(gearmand.port, {"pid": 1})
        second = int(client.submit("pid", "", timeout=10))
    assert second != first


def test_bad_config_exits_2_naming_the_key(tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("servers: ['127.0.0.1:1']\nmax_memory: lots\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "run", "-c", str(cfg)], capture_output=True, timeout=30
    )
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "max_memory" in err and ":2" in err and "lots" in err


def test_check_prints_the_plan_and_flags_broken_files(tmp_path: Path, workers_dir: Path):
    cfg = tmp_path / "gearmgr.yaml"
    cfg.write_text("count: 2\nfunctions:\n  sleepy:\n    dedicated_only: true\n")
    run = [sys.executable, "-m", "gearmgr", "check", "-c", str(cfg)]
    ok = subprocess.run(run, capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    out = ok.stdout.decode()
    assert "all#0" in out and "all#1" in out and "sleepy#0" in out
    shared_line = next(line for line in out.splitlines() if "all#0" in line)
    assert "sleepy" not in shared_line  # dedicated_only stays out of the shared processes
    (workers_dir / "broken.py").write_text("raise RuntimeError('no way')\n")
    bad = subprocess.run(run, capture_output=True, timeout=60)
    assert bad.returncode == 1
    assert "broken.py" in bad.stdout.decode() and "RuntimeError: no way" in bad.stdout.decode()
    cfg.write_text("count: [\n")
    assert subprocess.run(run, capture_output=True, timeout=60).returncode == 2


def test_status_json_shape(supervisor_factory, gearmand: Gearmand, tmp_path: Path):
    sup = supervisor_factory({"include": ["reverse", "boom"]})
    sup.wait_ready(gearmand.port, {"reverse": 1, "boom": 1})
    gearman_cli(gearmand.port, "-f", "reverse", "abc")
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "status", "--json", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["pid"] == sup.pid
    assert status["uptime"] >= 0
    assert status["servers"] == [{"address": gearmand.address, "connected": True}]
    assert {p["state"] for p in status["processes"]} <= {"idle", "busy", "stopping"}
    assert sorted(p["functions"][0] for p in status["processes"]) == ["boom", "reverse"]
    assert all(p["rss"] > 0 and p["started"] > 0 for p in status["processes"])
    reverse = status["functions"]["reverse"]
    # the backlog (SPEC, elastic pools): null until the first reading of the job servers
    assert reverse.pop("queued") in (0, None) and reverse.pop("running") in (0, None)
    assert reverse == {
        "processes": 1,
        "jobs_done": 1,
        "jobs_failed": 0,
        "restarts": {},
        "removed": False,
        "target": 1,
        "min": 1,
        "max": 1,
        "paused": False,
        "deaths": 0,
        "quarantined": 0,
    }
    assert all(0 < p["uss"] < p["rss"] for p in status["processes"])
    table = subprocess.run(
        [sys.executable, "-m", "gearmgr", "status", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert b"reverse" in table.stdout and b"PID" in table.stdout


def test_stop_command_waits_until_exited(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "stop", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert not pid_alive(sup.pid)
    again = subprocess.run(
        [sys.executable, "-m", "gearmgr", "status", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert again.returncode == 1
    assert b"no gearmgr is running" in again.stderr


def test_reload_command(supervisor_factory, gearmand: Gearmand, workers_dir: Path):
    sup = supervisor_factory({"include": ["reverse", "shout"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    (workers_dir / "shout.py").write_text("def shout(job):\n    return job.text.upper()\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "reload", "-c", str(sup.config_path)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    sup.wait_ready(gearmand.port, {"shout": 1})
    assert gearman_cli(gearmand.port, "-f", "shout", "hey").stdout.strip() == b"HEY"


def test_worker_code_is_never_imported_by_the_supervisor(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    trace = tmp_path / "imported-by"
    (workers_dir / "traced.py").write_text(
        "import os\n"
        f"with open({str(trace)!r}, 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n\n"
        "def traced(job):\n    return 'ok'\n"
    )
    sup = supervisor_factory({"include": ["traced"], "dedicated_count": 2})
    sup.wait_ready(gearmand.port, {"traced": 2})
    importers = {int(line) for line in trace.read_text().split()}
    workers = set(sup.worker_pids("traced"))
    assert workers <= importers  # each worker imported it after the fork...
    assert sup.pid not in importers  # ...and the supervisor never did
    assert len(importers - workers) == 1  # the one throwaway validation fork


def test_process_titles_and_socket_mode(supervisor_factory, gearmand: Gearmand):
    import stat

    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})

    def title(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()

    assert title(sup.pid) == f"gearmgr: supervisor ({sup.config_path})"
    worker = sup.worker_pids("reverse")[0]
    wait_for(lambda: title(worker) == "gearmgr: worker reverse [jobs=0 idle]", what="title")
    gearman_cli(gearmand.port, "-f", "reverse", "ab")
    wait_for(lambda: title(worker) == "gearmgr: worker reverse [jobs=1 idle]", what="jobs=1")
    mode = stat.S_IMODE((sup.workdir / "gearmgr.sock").stat().st_mode)
    assert mode == 0o600


def test_commands_without_a_config_say_how_to_give_one(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "GEARMGR_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "gearmgr", "status"],
        capture_output=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2
    assert b"pass -c FILE (or set GEARMGR_CONFIG)" in proc.stderr
