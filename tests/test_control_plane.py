"""The control plane cannot hurt the loop: whatever a local client sends to the control socket
or the metrics endpoint, and however many connect, the supervisor answers that client alone,
keeps its workers, and goes on serving everyone else."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearmgr.ops.control import BadRequest, ControlServer, parse_request
from tests.support import Gearmand, free_port, gearman_cli, wait_for
from tests.support import gearmgr_reload as reload


def ask(path: Path, payload: bytes, timeout: float = 5.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the request parser, in-process --------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"command": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        b'{"command": "status", "x": {"y": {"z": 1}}}',
        b"\xff\xfe{",
        b'{"command": 12}',
        b'{"command": "restart"}',
        b'{"command": "restart", "function": 5}',
        b'{"command": "restart", "function": "' + b"a" * 10000 + b'"}',
        b'{"command": "status", "extra": "x"}',
        b"null",
        b"1e999999",
        b'"' + b"\\ud800" * 1000 + b'"',
    ],
)
def test_hostile_requests_are_refused_with_a_reason(line: bytes):
    with pytest.raises(BadRequest):
        parse_request(line)


def test_known_requests_parse():
    assert parse_request(b'{"command": "status"}') == {"command": "status"}
    assert parse_request(b'{"command": "restart", "function": "reverse"}') == {
        "command": "restart",
        "function": "reverse",
    }


def make_server(tmp_path: Path, handler) -> ControlServer:
    return ControlServer(tmp_path / "c.sock", handler)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_get_one_json_answer_line(tmp_path_factory, data: bytes):
    server = make_server(tmp_path_factory.mktemp("fuzz"), lambda req, later: {"ok": True})
    try:
        out = server.answer(data + b"\n", reply=None)  # type: ignore[arg-type]
        assert isinstance(out, bytes) and out.endswith(b"\n") and out.count(b"\n") == 1
        assert isinstance(json.loads(out), dict)
    finally:
        server.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["command", "function", "x"]), json_values, max_size=3))
def test_any_json_object_is_parsed_or_refused(request: dict):
    line = json.dumps(request).encode()
    try:
        parsed = parse_request(line)
    except BadRequest:
        return
    assert parsed["command"] in ("status", "reload", "stop", "restart")
    assert all(isinstance(v, str) for v in parsed.values())


def serve_one(server: ControlServer, selector, payload: bytes) -> bytes:
    """Run the server in a selector like the supervisor's loop; return what one client got."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(server.path))
    client.sendall(payload)
    client.setblocking(False)
    got = b""
    deadline = time.monotonic() + 5
    while not got.endswith(b"\n") and time.monotonic() < deadline:
        for key, _ in selector.select(0.05):
            key.data.ready(key.fileobj)
        try:
            got += client.recv(65536)
        except BlockingIOError:
            pass
    client.close()
    return got


def test_an_exception_in_the_handler_is_answered_to_that_client_alone(tmp_path: Path):
    calls = []

    def handler(request, later):
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return {"ok": True}

    server = make_server(tmp_path, handler)
    selector = selectors.DefaultSelector()
    server.attach(selector)
    try:
        first = json.loads(serve_one(server, selector, b'{"command": "status"}\n'))
        second = json.loads(serve_one(server, selector, b'{"command": "status"}\n'))
    finally:
        server.close()
    assert first["ok"] is False and "internal error: RuntimeError" in first["error"]
    assert second == {"ok": True}


# -- a real supervisor ---------------------------------------------------------------------------


def test_a_deeply_nested_request_does_not_kill_the_supervisor_or_its_workers(
    supervisor_factory, gearmand: Gearmand
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    before = sup.worker_pids()
    sock = sup.workdir / "gearmgr.sock"
    for payload in (
        b"[" * 20000 + b"]" * 20000 + b"\n",
        b'{"command": "' + b"\xff" * 100 + b'"}\n',
        b'{"command": "restart", "function": {"a": [1, [2, [3]]]}}\n',
        b"x" * 70000,
    ):
        answer = ask(sock, payload)
        assert json.loads(answer)["ok"] is False, answer[:200]
    sup.assert_alive()
    assert sup.worker_pids() == before
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"


def test_a_flood_of_idle_connections_does_not_stop_the_loop(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    old = sup.worker_pids()
    path = str(sup.workdir / "gearmgr.sock")
    held = []
    try:
        for _ in range(300):  # far more than the listener keeps open at once
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except OSError:
                s.close()
                continue
            held.append(s)
        # The loop still reaps and respawns while the flood holds.
        os.kill(old[0], 9)
        sup.wait_ready(gearmand.port, {"reverse": 1})
        assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"
        sup.assert_alive()
    finally:
        for s in held:
            s.close()
    # Once the flood is gone, the socket serves everyone again.
    wait_for(lambda: sup.try_status() is not None, timeout=10, what="status after the flood")
    wait_for(lambda: sup.worker_pids() not in ([], old), timeout=10, what="a new process")


@pytest.mark.skipif(not shutil.which("prlimit"), reason="needs util-linux prlimit")
def test_out_of_fds_the_supervisor_backs_off_instead_of_spinning(
    supervisor_factory, gearmand: Gearmand
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    used = len(os.listdir(f"/proc/{sup.pid}/fd"))
    limit = used + 6
    subprocess.run(["prlimit", f"--pid={sup.pid}", f"--nofile={limit}:"], check=True)
    path = str(sup.workdir / "gearmgr.sock")
    held = []
    try:
        for _ in range(40):  # more connections than the supervisor has fds left
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            held.append(s)
        wait_for(lambda: "cannot accept a connection" in sup.log(), timeout=5, what="EMFILE")
        start_cpu, start = cpu_seconds(sup.pid), time.monotonic()
        time.sleep(2.0)  # measuring CPU use over a fixed window
        share = (cpu_seconds(sup.pid) - start_cpu) / (time.monotonic() - start)
        assert share < 0.2, f"the supervisor used {share:.0%} of a core while out of fds"
        sup.assert_alive()
    finally:
        for s in held:
            s.close()
    subprocess.run(["prlimit", f"--pid={sup.pid}", "--nofile=1024:"], check=True)
    wait_for(lambda: sup.try_status() is not None, timeout=10, what="status once fds are back")


def test_garbage_on_the_metrics_port_is_answered_and_harmless(
    supervisor_factory, gearmand: Gearmand
):
    port = free_port()
    sup = supervisor_factory({"include": ["reverse"], "metrics": f"127.0.0.1:{port}"})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    for payload in (b"\x00\xff" * 40000, b"POST / HTTP/1.0\r\n\r\n", b"G" * 100 + b"\n\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(payload)
                answer = s.recv(200)
            except ConnectionResetError:
                answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.0 4"), answer
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        body = b""
        while chunk := s.recv(65536):
            body += chunk
    assert b"gearmgr_jobs_total" in body
    sup.assert_alive()


def test_job_servers_that_never_answer_do_not_stall_the_loop(
    supervisor_factory, gearmand: Gearmand
):
    """Ten 'servers' that accept connections (the kernel's backlog) and never answer: the
    supervisor's check of the job servers must not hold up its loop."""
    silent = []
    for _ in range(10):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(100)
        silent.append(s)
    servers = [gearmand.address] + [f"127.0.0.1:{s.getsockname()[1]}" for s in silent]
    try:
        sup = supervisor_factory({"include": ["reverse"], "servers": servers})
        sup.wait_ready(gearmand.port, {"reverse": 1})
        # Over more than one check period (5 s), no control request waits long.
        slowest, end = 0.0, time.monotonic() + 6.5
        while time.monotonic() < end:
            started = time.monotonic()
            assert sup.try_status() is not None
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.02)
        assert slowest < 0.5, f"a status request waited {slowest:.2f}s"
        assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"
        status = sup.status()
        up = {s["address"]: s["connected"] for s in status["servers"]}
        assert up[gearmand.address] is True
        assert not any(up[a] for a in servers[1:])
    finally:
        for s in silent:
            s.close()


# -- reload tells its outcome --------------------------------------------------------------------


def test_reload_reports_broken_worker_files_and_exits_1(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path
):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    (workers_dir / "reverse.py").write_text("def reverse(job):\n    return job.text[::-1\n")
    proc = reload(sup)
    assert proc.returncode == 1, proc
    assert "reverse" in proc.stdout and "SyntaxError" in proc.stdout
    assert "keep their old code" in proc.stdout
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"


def test_reload_of_a_config_that_does_not_load_exits_2(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    text = sup.config_path.read_text()
    sup.config_path.write_text(text + "max_jobz: 3\n")
    proc = reload(sup)
    sup.config_path.write_text(text)
    assert proc.returncode == 2, proc
    assert "max_jobz" in proc.stderr and "Traceback" not in proc.stderr
    sup.assert_alive()


def test_reload_the_supervisor_refuses_says_why_and_exits_1(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    text = sup.config_path.read_text()
    sup.config_path.write_text(text + "count: 1000\n")
    proc = reload(sup)
    assert proc.returncode == 1, proc
    assert "reload not applied" in proc.stderr and "runs at most 1000" in proc.stderr
    assert "keeps running what it ran" in proc.stderr
    assert gearman_cli(gearmand.port, "-f", "reverse", "abc").stdout.strip() == b"cba"


def test_reload_that_applies_says_so(supervisor_factory, gearmand: Gearmand):
    sup = supervisor_factory({"include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    proc = reload(sup)
    assert proc.returncode == 0, proc
    assert proc.stdout.strip() == "gearmgr: reload applied"
