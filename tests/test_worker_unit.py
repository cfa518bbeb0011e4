"""Unit tests of the worker loop's pieces, with socketpairs instead of a server."""

from __future__ import annotations

import socket

from gearmgr.wire import session as worker_mod
from gearmgr.wire.protocol import REQ, Decoder, PacketType
from gearmgr.worker.job import Job, to_bytes
from gearmgr.worker.loop import DOWN, UP, Worker


def connected_worker(handler=lambda job: b"") -> tuple[Worker, socket.socket]:
    w = Worker(["127.0.0.1:1"], {"f": handler})
    ours, theirs = socket.socketpair()
    conn = w.conns[0]
    conn.sock = ours
    conn.session.state, conn.session.sleeping = UP, True
    w._by_fd[ours.fileno()] = conn
    w._poll.register(ours)
    return w, theirs


def test_idle_connection_sends_echo_then_drops_a_silent_server():
    w, server = connected_worker()
    conn = w.conns[0]
    conn.session.last_rx = 0.0
    now = worker_mod.KEEPALIVE_IDLE + 1
    w._tick(now)
    packets = Decoder(expect=REQ).feed(server.recv(1024))
    assert [p.type for p in packets] == [PacketType.ECHO_REQ]
    assert conn.state == UP
    w._tick(now + worker_mod.KEEPALIVE_WAIT + 1)
    assert conn.state == DOWN  # half-open: dropped, and a reconnect is scheduled
    assert conn.session.retry_at > now


def test_an_answered_echo_keeps_the_connection():
    w, server = connected_worker()
    conn = w.conns[0]
    conn.session.last_rx = 0.0
    now = worker_mod.KEEPALIVE_IDLE + 1
    w._tick(now)
    server.recv(1024)
    from gearmgr.wire.protocol import RES, encode

    server.sendall(encode(PacketType.ECHO_RES, b"gearmgr", magic=RES))
    w._receive(conn)
    w._tick(now + worker_mod.KEEPALIVE_WAIT + 1)
    assert conn.state == UP


def test_reconnect_backoff_grows_and_is_capped():
    w = Worker(["127.0.0.1:1"], {"f": lambda job: b""})
    conn = w.conns[0]
    delays = []
    for _ in range(12):
        w._lost(conn, 0.0, "test")
        delays.append(conn.session.retry_at)
    assert delays[0] < 0.2 and delays[3] > delays[0]
    assert max(delays) <= worker_mod.RECONNECT_MAX * 1.2


def test_return_values_become_bytes():
    assert to_bytes(b"x") == b"x"
    assert to_bytes("é") == "é".encode()
    assert to_bytes(None) == b""
    assert to_bytes({"a": [1, 2]}) == b'{"a": [1, 2]}'
    assert to_bytes(bytearray(b"ab")) == b"ab"
    digest = type("Digest", (bytes,), {})(b"cd")  # a subclass of bytes is bytes, not JSON
    assert to_bytes(digest) == b"cd" and type(to_bytes(digest)) is bytes


def test_job_api():
    sent: list[bytes] = []
    job = Job("H:1", "f", "u1", b'{"k": "v\xc3\xa9"}', sent.append)
    assert job.json() == {"k": "vé"}
    assert job.text == '{"k": "vé"}'
    job.status(1, 4)
    job.send_data("chunk")
    job.warning(b"careful")
    packets = Decoder(expect=REQ).feed(b"".join(sent))
    assert [(p.type, p.args) for p in packets] == [
        (PacketType.WORK_STATUS, (b"H:1", b"1", b"4")),
        (PacketType.WORK_DATA, (b"H:1", b"chunk")),
        (PacketType.WORK_WARNING, (b"H:1", b"careful")),
    ]


def test_journald_lines_carry_the_priority_and_the_process_label():
    import logging

    from gearmgr.logs import SHORT_FORMAT, JournalFormatter, _label

    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "two\nlines", None, None)
    _label.filter(record)
    text = JournalFormatter(SHORT_FORMAT).format(record)
    assert text.splitlines() == [
        f"<4>gearmgr[{record.process}] supervisor: two",
        "<4>lines",
    ]


def _assign(handle: bytes, payload: bytes) -> bytes:
    from gearmgr.wire.protocol import RES, encode

    return encode(PacketType.JOB_ASSIGN_UNIQ, handle, b"f", b"uniq", payload, magic=RES)


def _replies(server: socket.socket, until: int) -> list:
    server.settimeout(5)
    decoder = Decoder(expect=REQ)
    packets: list = []
    while len(packets) < until:
        data = server.recv(1 << 20)
        assert data, "the worker closed the connection"
        packets += decoder.feed(data)
    return packets


def test_a_job_in_one_read_and_a_large_job_in_many_reads_complete_intact():
    import threading

    seen = []
    w, server = connected_worker(lambda job: (seen.append((job.handle, job.unique)), job.data)[1])
    conn = w.conns[0]
    small = b"a\0b\0c"  # NULs in the workload: only the first three separate arguments
    server.sendall(_assign(b"H:1", small))
    w._receive(conn)  # one read holds the whole packet
    complete, grab = _replies(server, 2)
    assert complete.type == PacketType.WORK_COMPLETE and complete.args == (b"H:1", small)
    assert grab.type == PacketType.GRAB_JOB_UNIQ
    large = bytes(range(256)) * 4096  # 1 MiB: arrives in several reads, leaves in several writes
    replies: list = []
    reader = threading.Thread(target=lambda: replies.extend(_replies(server, 2)))
    writer = threading.Thread(target=server.sendall, args=(_assign(b"H:2", large),))
    reader.start()
    writer.start()
    while w.jobs < 2:
        w._receive(conn)
    writer.join(5)
    reader.join(5)
    assert replies[0].args == (b"H:2", large)
    assert seen == [("H:1", "uniq"), ("H:2", "uniq")]


def test_log_lines_are_bounded_whatever_the_message_or_the_exception():
    import logging
    import sys

    from gearmgr.logs import MAX_MESSAGE, PLAIN_FORMAT, JournalFormatter, _label, setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info")
        formatter = root.handlers[0].formatter
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert formatter is not None
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%s", ("m" * 1_000_000,), None)
    try:
        raise ValueError("v" * 1_000_000)
    except ValueError:
        exc_record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info()
        )
    for fmt in (formatter, JournalFormatter(PLAIN_FORMAT)):
        for rec in (record, exc_record):
            _label.filter(rec)
            rec.exc_text = None
            text = fmt.format(rec)
            assert len(text) < 4 * MAX_MESSAGE + 20_000
            assert max(len(line) for line in text.splitlines()) <= MAX_MESSAGE + 200
    assert "(1000000 chars)" in formatter.format(record)
    text = formatter.format(exc_record)
    assert "Traceback (most recent call last)" in text and "ValueError: vvv" in text


def test_peer_bytes_are_clipped_and_escaped_for_the_log():
    from gearmgr.logs import clip

    assert clip(b"H:1") == "H:1"
    assert clip(b"a\nb\x1b[31m\xff") == "a\\nb\\x1b[31m\\xff"
    text = clip(b"x\n" * 500_000)
    assert len(text) < 250 and text.endswith("... (1000000 bytes)") and "\n" not in text


def test_closed_fds_0_to_2_get_dev_null_before_a_worker_opens_a_socket():
    import os

    pid = os.fork()
    if pid == 0:  # the child closes fds 0-2 like a careless job, then starts a worker
        code = 1
        try:
            for fd in (0, 1, 2):
                os.close(fd)
            w = Worker(["127.0.0.1:1"], {"f": lambda job: b""})
            conn = w.conns[0]
            w._connect(conn, 0.0)
            ok = conn.sock is not None and conn.sock.fileno() > 2 and w._wakeup.r > 2
            ok = ok and all(os.readlink(f"/proc/self/fd/{fd}") == "/dev/null" for fd in (0, 1, 2))
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- idle workers sleep (issue 10): integration, with a real gearmand ------------------------------


def _wakeups(pid: int) -> int:
    """How often ``pid``'s threads were scheduled since they started (context switches)."""
    import os

    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def test_an_idle_worker_does_not_wake_up_until_there_is_work(supervisor_factory, gearmand):
    import time

    from tests.support import gearman_cli

    sup = supervisor_factory({"include": ["reverse"], "dedicated_count": 2})
    sup.wait_ready(gearmand.port, {"reverse": 2})
    assert gearman_cli(gearmand.port, "-f", "reverse", "ab").stdout.strip() == b"ba"
    time.sleep(0.3)  # the process settles into poll() (title, RSS written on turning idle)
    pids = sup.worker_pids()
    before = {pid: _wakeups(pid) for pid in pids}
    time.sleep(2.0)  # a window of time with nothing to do: what is measured
    woke = {pid: _wakeups(pid) - before[pid] for pid in pids}
    assert all(n == 0 for n in woke.values()), f"idle workers woke up: {woke}"
    assert gearman_cli(gearmand.port, "-f", "reverse", "xy").stdout.strip() == b"yx"


def test_workers_notice_the_supervisor_s_death_within_a_second(supervisor_factory, gearmand):
    import signal
    import time

    from tests.support import children_of, pid_alive, wait_for

    sup = supervisor_factory({"include": ["reverse"], "dedicated_count": 2})
    sup.wait_ready(gearmand.port, {"reverse": 2})
    workers = children_of(sup.pid)
    assert len(workers) == 2
    sup.signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not any(pid_alive(p) for p in workers), timeout=5, what="orphans gone")
    assert time.monotonic() - killed < 1.0
