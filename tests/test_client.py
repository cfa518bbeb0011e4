"""gearmgr.Client, gearmgr.admin.Admin and `gearmgr submit` against a real gearmand.

The jobs are served by ``RawWorker``, a few dozen lines of raw protocol in a thread, so these tests
depend on the codec and gearmand only, not on gearmgr's own worker.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearmgr.cli.submit import add_arguments
from gearmgr.cli.submit import main as submit_main
from gearmgr.units import parse_address
from gearmgr.wire.admin import Admin
from gearmgr.wire.client import (
    Client,
    GearmanError,
    JobFailed,
    JobStatus,
    JobTimeout,
    ServerUnavailable,
)
from gearmgr.wire.protocol import Decoder, Packet, encode
from gearmgr.wire.protocol import PacketType as T
from tests.support import Gearmand, admin, free_port, unique_homed_at, wait_for

FUNCTIONS = ("reverse", "echo", "fail", "exception", "progress", "slow", "unique")


class RawWorker:
    """A single-threaded Gearman worker speaking the raw protocol, run in a thread.

    ``jobs`` records ``(function, unique, data)`` in the order the jobs were received; ``slow``
    reports 1/3 then blocks until ``release`` is set.
    """

    def __init__(self, address: str, functions: tuple[str, ...] = FUNCTIONS) -> None:
        self.sock = socket.create_connection(parse_address(address), timeout=None)
        self.decoder = Decoder()
        self.ready: list[Packet] = []
        self.jobs: list[tuple[str, str, bytes]] = []
        self.release = threading.Event()
        self.functions = functions
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RawWorker:
        hello = encode(T.SET_CLIENT_ID, b"raw-test-worker")
        hello += b"".join(encode(T.CAN_DO, fn.encode()) for fn in self.functions)
        self.sock.sendall(hello + encode(T.GRAB_JOB_UNIQ))
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.sock.close()

    def _next(self) -> Packet:
        while not self.ready:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError
            self.ready.extend(self.decoder.feed(chunk))
        return self.ready.pop(0)

    def _run(self) -> None:
        try:
            while True:
                packet = self._next()
                if packet.type == T.NOOP:
                    self.sock.sendall(encode(T.GRAB_JOB_UNIQ))
                elif packet.type == T.NO_JOB:
                    self.sock.sendall(encode(T.PRE_SLEEP))
                elif packet.type == T.JOB_ASSIGN_UNIQ:
                    handle, function, unique, data = packet.args
                    self.jobs.append((function.decode(), unique.decode(), data))
                    self.sock.sendall(self._work(handle, function.decode(), unique, data))
                    self.sock.sendall(encode(T.GRAB_JOB_UNIQ))
        except OSError:
            return

    def _work(self, handle: bytes, function: str, unique: bytes, data: bytes) -> bytes:
        """The packets answering one job."""
        if function == "reverse":
            return encode(T.WORK_COMPLETE, handle, data[::-1])
        if function == "echo":
            return encode(T.WORK_COMPLETE, handle, data)
        if function == "unique":
            return encode(T.WORK_COMPLETE, handle, unique)
        if function == "fail":
            return encode(T.WORK_WARNING, handle, b"ValueError: bad input") + encode(
                T.WORK_FAIL, handle
            )
        if function == "exception":
            return encode(T.WORK_EXCEPTION, handle, b"KeyError: 'x'")
        if function == "progress":
            return b"".join(
                [
                    encode(T.WORK_STATUS, handle, b"1", b"2"),
                    encode(T.WORK_DATA, handle, b"chunk1"),
                    encode(T.WORK_WARNING, handle, b"warn1"),
                    encode(T.WORK_STATUS, handle, b"2", b"2"),
                    encode(T.WORK_COMPLETE, handle, b"done"),
                ]
            )
        if function == "slow":
            self.sock.sendall(encode(T.WORK_STATUS, handle, b"1", b"3"))
            self.release.wait(30)
            return encode(T.WORK_COMPLETE, handle, b"slow done")
        return encode(T.WORK_FAIL, handle)


@pytest.fixture
def worker(gearmand: Gearmand) -> Iterator[RawWorker]:
    w = RawWorker(gearmand.address).start()
    wait_for(lambda: gearmand.status().get("slow", (0, 0, 0))[2] == 1, what="worker registered")
    yield w
    w.stop()


@pytest.fixture
def client(gearmand: Gearmand) -> Iterator[Client]:
    with Client([gearmand.address], timeout=20) as c:
        yield c


def closed_port_address() -> str:
    """An address nothing listens on: connecting to it is refused."""
    return f"127.0.0.1:{free_port()}"


def connections(gearmand: Gearmand) -> int:
    """Connections gearmand has open (the `workers` listing includes clients)."""
    return len(gearmand.workers())


# -- payloads and results ---------------------------------------------------------------------


def test_foreground_job_returns_the_result_bytes(client: Client, worker: RawWorker) -> None:
    result = client.submit("reverse", b"hello")
    assert result == b"olleh"
    assert isinstance(result, bytes)


def test_submit_job_is_an_alias_of_submit(client: Client, worker: RawWorker) -> None:
    assert client.submit_job("reverse", b"abc") == b"cba"


def test_str_data_is_sent_as_utf8_and_arrives_intact(client: Client, worker: RawWorker) -> None:
    text = "héllo ☃ — ünïcode"
    assert client.submit("echo", text) == text.encode("utf-8")
    assert worker.jobs[-1][2] == text.encode("utf-8")


def test_other_data_is_sent_as_json(client: Client, worker: RawWorker) -> None:
    payload = {"n": [1, 2.5, None], "s": "é", "ok": True}
    assert json.loads(client.submit("echo", payload)) == payload
    assert json.loads(client.submit("echo", [1, 2])) == [1, 2]


def test_binary_data_with_nul_and_0xff_is_intact(client: Client, worker: RawWorker) -> None:
    data = b"\x00a\x00\xff\xfe\x00" + bytes(range(256))
    assert client.submit("echo", data) == data
    assert client.submit("reverse", data) == data[::-1]


def test_empty_data_and_large_data(client: Client, worker: RawWorker) -> None:
    assert client.submit("echo") == b""
    big = bytes(range(256)) * 8192  # 2 MiB, many reads on each side
    assert client.submit("echo", big) == big


def test_progress_callbacks_receive_data_warnings_and_status(
    client: Client, worker: RawWorker
) -> None:
    data, warnings, statuses = [], [], []
    result = client.submit(
        "progress",
        b"x",
        on_data=data.append,
        on_warning=warnings.append,
        on_status=lambda n, d: statuses.append((n, d)),
    )
    assert result == b"done"  # WORK_COMPLETE's payload only, no WORK_DATA prepended
    assert data == [b"chunk1"]
    assert warnings == [b"warn1"]
    assert statuses == [(1, 2), (2, 2)]


# -- failures -----------------------------------------------------------------------------------


def test_work_fail_raises_job_failed_carrying_the_warning(
    client: Client, worker: RawWorker
) -> None:
    with pytest.raises(JobFailed) as info:
        client.submit("fail", b"x")
    exc = info.value
    assert "ValueError: bad input" in str(exc)
    assert exc.warnings == ["ValueError: bad input"]
    assert exc.function == "fail"
    assert exc.handle.startswith("H:")
    assert exc.exception is None
    assert isinstance(exc, GearmanError)
    # the connection is still good for the next job
    assert client.submit("reverse", b"ok") == b"ko"


def test_work_exception_raises_job_failed_with_the_exception_text(
    client: Client, worker: RawWorker
) -> None:
    with pytest.raises(JobFailed) as info:
        client.submit("exception", b"x")
    assert info.value.exception == "KeyError: 'x'"
    assert "KeyError: 'x'" in str(info.value)
    assert client.submit("reverse", b"ok") == b"ko"


def test_server_error_packet_raises_gearman_error_with_its_code(client: Client) -> None:
    with pytest.raises(GearmanError) as info:
        client.submit("echo", b"x", background=True, unique="u" * 65)  # gearmand allows 64
    assert info.value.code == "ARGUMENT_TOO_LARGE"
    assert "Unique value too large" in str(info.value)


def test_bad_priority_and_nul_in_names_are_rejected(client: Client) -> None:
    with pytest.raises(ValueError, match="priority"):
        client.submit("echo", b"x", priority="urgent")
    with pytest.raises(ValueError, match="NUL"):
        client.submit("ec\0ho", b"x")
    with pytest.raises(ValueError, match="NUL"):
        client.submit("echo", b"x", unique="a\0b")


# -- priorities -----------------------------------------------------------------------------------


def test_background_priorities_map_to_the_right_queues(client: Client, gearmand: Gearmand) -> None:
    for priority, count in (("high", 1), ("normal", 2), ("low", 3)):
        for _ in range(count):
            client.submit("queued", b"x", background=True, priority=priority)
    # prioritystatus: FUNCTION HIGH NORMAL LOW WORKERS
    assert "queued\t1\t2\t3\t0" in admin(gearmand.port, "prioritystatus")


def test_foreground_priorities_decide_the_order_jobs_run(gearmand: Gearmand) -> None:
    results: dict[str, bytes] = {}

    def submit(priority: str) -> None:
        with Client(gearmand.address, timeout=20) as c:
            results[priority] = c.submit("echo", priority, priority=priority)

    threads = [threading.Thread(target=submit, args=(p,)) for p in ("low", "normal", "high")]
    for t in threads:
        t.start()
    wait_for(lambda: gearmand.status().get("echo", (0,))[0] == 3, what="3 jobs queued")
    w = RawWorker(gearmand.address, ("echo",)).start()
    try:
        for t in threads:
            t.join(20)
        assert [data for _, _, data in w.jobs] == [b"high", b"normal", b"low"]
        assert results == {p: p.encode() for p in ("low", "normal", "high")}
    finally:
        w.stop()


# -- background jobs and status ---------------------------------------------------------------


def test_background_job_returns_a_handle_and_runs(
    client: Client, worker: RawWorker, gearmand: Gearmand
) -> None:
    handle = client.submit("reverse", b"in the background", background=True)
    assert isinstance(handle, str)
    assert handle.startswith("H:")
    wait_for(lambda: worker.jobs, what="the worker got the job")
    assert worker.jobs[0][0] == "reverse"
    assert worker.jobs[0][2] == b"in the background"
    wait_for(lambda: gearmand.status()["reverse"][0] == 0, what="the job to finish")
    wait_for(lambda: not client.status(handle).known, what="status: not known any more")


def test_status_of_a_running_background_job(
    client: Client, worker: RawWorker, gearmand: Gearmand
) -> None:
    handle = client.submit("slow", b"x", background=True)
    running = JobStatus(known=True, running=True, numerator=1, denominator=3)
    wait_for(lambda: client.status(handle) == running, what=f"status {running}")
    worker.release.set()
    wait_for(lambda: client.status(handle) == JobStatus(False, False, 0, 0), what="done")


def test_status_of_a_queued_job_and_of_an_unknown_handle(client: Client) -> None:
    handle = client.submit("nobody-does-this", b"x", background=True)
    assert client.status(handle) == JobStatus(known=True, running=False, numerator=0, denominator=0)
    assert client.status("H:nowhere:1") == JobStatus(False, False, 0, 0)


def test_status_asks_the_server_that_created_the_job(tmp_path: Path) -> None:
    # Two servers hand out the same handle "H:<host>:1"; the job on the first one runs, the one
    # on the second is queued. The client must ask the second, which created its job.
    first_port = free_port()
    second = Gearmand(tmp_path).start()
    first = Gearmand(tmp_path, port=first_port)
    w = None
    try:
        with Client([f"127.0.0.1:{first_port}", second.address], timeout=10) as c:
            handle = c.submit("queued", b"x", background=True)  # the first one is down
            first.start()
            w = RawWorker(first.address, ("slow",)).start()
            with Client([first.address], timeout=10) as elsewhere:
                other = elsewhere.submit("slow", b"x", background=True)
            assert other == handle, "precondition: both servers use the same handle"
            wait_for(lambda: first.status()["slow"][1] == 1, what="the job running on first")
            assert c.status(handle) == JobStatus(True, False, 0, 0)
            # a client that did not create the job asks every server in order
            with Client([first.address, second.address], timeout=10) as stranger:
                assert stranger.status(handle) == JobStatus(True, True, 1, 3)
    finally:
        if w is not None:
            w.stop()
        first.stop()
        second.stop()


def test_status_of_an_unknown_handle_when_a_server_is_down(gearmand: Gearmand) -> None:
    with Client([closed_port_address(), gearmand.address], timeout=10) as c:
        with Client(gearmand.address) as elsewhere:
            handle = elsewhere.submit("queued", b"x", background=True)
        assert c.status(handle).known  # the dead server is skipped
        with pytest.raises(ServerUnavailable):
            c.status("H:unknown:99")  # it might live on the dead server


# -- unique ids ---------------------------------------------------------------------------------


def test_a_unique_id_is_always_sent(client: Client, worker: RawWorker) -> None:
    first = client.submit("unique", b"x")
    second = client.submit("unique", b"x")
    assert re.fullmatch(rb"[0-9a-f]{32}", first)
    assert re.fullmatch(rb"[0-9a-f]{32}", second)
    assert first != second


def test_queued_background_jobs_carry_a_unique_id(client: Client, gearmand: Gearmand) -> None:
    client.submit("queued", b"a", background=True)
    client.submit("queued", b"b", background=True)
    uniques = admin(gearmand.port, "show unique jobs")
    assert len(uniques) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", u) for u in uniques), uniques


def test_an_explicit_unique_id_is_sent_and_coalesces_jobs(
    client: Client, gearmand: Gearmand
) -> None:
    one = client.submit("queued", b"a", background=True, unique="order-42")
    two = client.submit("queued", b"b", background=True, unique="order-42")
    assert one == two
    assert admin(gearmand.port, "show unique jobs") == ["order-42"]
    assert gearmand.status()["queued"][0] == 1


def test_an_explicit_unique_id_reaches_the_worker(client: Client, worker: RawWorker) -> None:
    assert client.submit("unique", b"x", unique="k1") == b"k1"


# -- servers, connections, timeouts ---------------------------------------------------------------


def test_failover_skips_a_server_that_refuses(gearmand: Gearmand, worker: RawWorker) -> None:
    with Client([closed_port_address(), gearmand.address], timeout=10) as c:
        assert c.submit("reverse", b"abc") == b"cba"
        assert c.submit("reverse", b"def") == b"fed"


def test_server_unavailable_names_every_server_tried() -> None:
    servers = [closed_port_address(), closed_port_address()]
    with Client(servers, timeout=5) as c, pytest.raises(ServerUnavailable) as info:
        c.submit("reverse", b"abc")
    for server in servers:
        assert server in str(info.value)
        assert server in info.value.errors
    assert "refused" in str(info.value).lower()
    assert isinstance(info.value, GearmanError)


def test_one_connection_is_reused_across_calls(client: Client, gearmand: Gearmand) -> None:
    # the `workers` listing shows every connection, its own included
    wait_for(lambda: connections(gearmand) == 1, what="only the admin connection")
    for _ in range(5):
        client.submit("queued", b"x", background=True)
        client.echo(b"x")
    assert connections(gearmand) == 2
    client.close()
    wait_for(lambda: connections(gearmand) == 1, what="the connection to close")


def test_client_reconnects_after_the_server_restarts(tmp_path: Path) -> None:
    server = Gearmand(tmp_path).start()
    try:
        with Client([server.address], timeout=10) as c:
            assert c.submit("queued", b"x", background=True).startswith("H:")
            server.stop()
            server = Gearmand(tmp_path, port=server.port).start()
            assert c.submit("queued", b"x", background=True).startswith("H:")
            assert c.echo(b"still there") == b"still there"
        assert server.status()["queued"][0] == 1
    finally:
        server.stop()


def test_job_timeout_when_the_result_is_late(client: Client, worker: RawWorker) -> None:
    with pytest.raises(JobTimeout) as info:
        client.submit("slow", b"x", timeout=0.3)
    assert isinstance(info.value, GearmanError)
    assert "slow" in str(info.value)
    worker.release.set()
    # late WORK_* packets of the abandoned job must not confuse the next call
    assert client.submit("reverse", b"next") == b"txen"


def test_losing_the_server_during_a_job_raises_without_resubmitting(
    gearmand: Gearmand, worker: RawWorker, tmp_path: Path
) -> None:
    spare = Gearmand(tmp_path).start()  # a second server that must not get the job
    try:

        def kill_when_running() -> None:
            wait_for(lambda: worker.jobs, what="the job running")
            gearmand.stop()

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        servers = [gearmand.address, spare.address]
        with Client(servers, timeout=20) as c:
            with pytest.raises(GearmanError, match="connection lost") as info:
                c.submit("slow", b"x", unique=unique_homed_at(gearmand.address, servers))
            assert not isinstance(info.value, JobTimeout | JobFailed | ServerUnavailable)
        killer.join(10)
        assert spare.status() == {}
    finally:
        spare.stop()


def test_job_timeout_uses_the_client_default(gearmand: Gearmand) -> None:
    with Client(gearmand.address, timeout=0.2) as c, pytest.raises(JobTimeout):
        c.submit("nobody-does-this", b"x")


def test_a_silent_server_times_out_and_is_failed_over(
    gearmand: Gearmand, worker: RawWorker
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody answers
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        with Client(address, timeout=0.3, connect_timeout=30) as c:
            start = time.monotonic()
            with pytest.raises(JobTimeout, match=re.escape(address)):
                c.submit("reverse", b"abc")
            assert time.monotonic() - start < 5
        with Client([address, gearmand.address], timeout=30, connect_timeout=0.3) as c:
            assert c.submit("reverse", b"abc") == b"cba"
    finally:
        silent.close()


def test_malformed_answer_closes_the_connection_and_raises() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(conn)
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.recv(65536)  # returns b"" once the client has closed its end

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(address, timeout=5) as c, pytest.raises(ServerUnavailable) as info:
            c.submit("echo", b"x")
        assert "bad magic" in str(info.value)
        thread.join(5)
        assert not thread.is_alive(), "the client did not close the connection"
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_echo_and_ping(client: Client) -> None:
    assert client.echo(b"a\0b") == b"a\0b"
    assert client.ping() >= 0


def test_server_lists() -> None:
    assert Client("a:1, b:2").servers == ["a:1", "b:2"]
    assert Client(["[::1]:4740", "gearman.local"]).servers == ["[::1]:4740", "gearman.local"]
    for bad in ([], "", ["host:port"], ["host:0"]):
        with pytest.raises(ValueError):
            Client(bad)


# -- admin ---------------------------------------------------------------------------------------


def test_admin_status_workers_version_and_pid(
    client: Client, worker: RawWorker, gearmand: Gearmand
) -> None:
    client.submit("queued", b"x", background=True)
    with Admin(gearmand.address) as adm:
        rows = {row.function: row for row in adm.status()}
        assert (rows["queued"].total, rows["queued"].running, rows["queued"].workers) == (1, 0, 0)
        assert rows["reverse"].workers == 1
        mine = [w for w in adm.workers() if w.client_id == "raw-test-worker"]
        assert len(mine) == 1
        assert set(mine[0].functions) == set(FUNCTIONS)
        assert mine[0].ip == "127.0.0.1"
        assert re.match(r"\d+\.\d+", adm.version())
        assert gearmand.proc is not None
        assert adm.getpid() == gearmand.proc.pid


def test_admin_errors() -> None:
    address = closed_port_address()
    with pytest.raises(ServerUnavailable, match=re.escape(address)):
        Admin(address).status()


def test_admin_err_answer_raises_gearman_error(gearmand: Gearmand) -> None:
    with Admin(gearmand.address) as adm:
        with pytest.raises(GearmanError, match="ERR"):
            adm.command("no-such-command", expect_list=False)
        assert adm.version()  # reconnects after the error


# -- gearmgr submit --------------------------------------------------------------------------------


def run_submit(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gearmgr submit")
    add_arguments(parser)
    return submit_main(parser.parse_args(argv))


def test_cli_prints_the_result(
    gearmand: Gearmand, worker: RawWorker, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run_submit(["reverse", "hello", "-s", gearmand.address]) == 0
    assert capsysbinary.readouterr().out == b"olleh\n"


def test_cli_reads_data_from_stdin(
    gearmand: Gearmand,
    worker: RawWorker,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\x00bin\xff")))
    assert run_submit(["echo", "-", "-s", gearmand.address, "--priority", "high"]) == 0
    assert capsysbinary.readouterr().out == b"\x00bin\xff\n"


def test_cli_background_prints_the_handle(
    gearmand: Gearmand, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["queued", "data", "--background", "--unique", "cli-1", "--priority", "low"]
    assert run_submit([*argv, "-s", gearmand.address]) == 0
    assert re.fullmatch(r"H:\S+\n", capsys.readouterr().out)
    assert admin(gearmand.port, "show unique jobs") == ["cli-1"]
    assert "queued\t0\t0\t1\t0" in admin(gearmand.port, "prioritystatus")


def test_cli_failing_job_exits_1_with_the_reason(
    gearmand: Gearmand, worker: RawWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_submit(["fail", "x", "-s", gearmand.address]) == 1
    captured = capsys.readouterr()
    assert captured.err == "gearmgr: job failed: ValueError: bad input\n"
    assert captured.out == ""


def test_cli_no_server_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    dead = closed_port_address()
    assert run_submit(["reverse", "x", "-s", dead]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gearmgr: ")
    assert dead in err
    assert err.count("\n") == 1


def test_cli_fails_over_and_times_out(
    gearmand: Gearmand, worker: RawWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["reverse", "abc", "-s", closed_port_address(), "-s", gearmand.address]
    assert run_submit(argv) == 0
    assert capsys.readouterr().out == "cba\n"
    assert run_submit(["slow", "x", "-s", gearmand.address, "--timeout", "0.2"]) == 1
    assert "did not finish in time" in capsys.readouterr().err


def test_cli_bad_server_address_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        run_submit(["reverse", "x", "-s", "host:notaport"])
    assert info.value.code == 2
