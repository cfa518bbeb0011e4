"""A job server that sends malformed or hostile bytes cannot crash a worker (issue 9, item 3).

A fake job server written here (threads and the binary protocol on a free loopback port) runs
beside a real gearmand; a real ``gearmgr run`` serves both. Jobs at the real gearmand must keep
completing, the worker must keep its pid, reconnects to the fake server must slow down, and the
log must stay short. Unit level: the worker's packet handling fed arbitrary bytes never raises.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearmgr.wire import session as worker_mod
from gearmgr.wire.protocol import REQ, RES, Decoder, PacketType, ProtocolError, encode
from gearmgr.worker.loop import DOWN, UP, Worker
from tests.support import Gearmand, free_port, gearman_cli, wait_for

T = PacketType
NOOP = encode(T.NOOP, magic=RES)
NO_JOB = encode(T.NO_JOB, magic=RES)


def assign(handle: bytes, function: bytes, data: bytes = b"x", unique: bytes = b"u") -> bytes:
    return encode(T.JOB_ASSIGN_UNIQ, handle, function, unique, data, magic=RES)


def header(ptype: int, size: int) -> bytes:
    return struct.pack(">4sII", RES, ptype, size)


# -- the fake job server -------------------------------------------------------------------------

#: What the fake server does on a connection: called with the server and the socket, after
#: each GRAB_JOB_UNIQ it receives (``None`` before the first read); returns False to close.
Script = Callable[["FakeServer", socket.socket, int], bool]


class FakeServer:
    """A job server on a free loopback port that answers each GRAB with what ``script`` sends.

    Records what a job server operator would see: the connections accepted (times), the
    packets the worker sent, and whether the worker ever sent bytes that are not packets."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.accepted: list[float] = []
        self.received: list[tuple[int, tuple[bytes, ...]]] = []
        self.garbage: list[bytes] = []
        self.grabs = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closing:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(sock)
            threading.Thread(target=self._serve, args=(sock, time.monotonic()), daemon=True).start()

    def _serve(self, sock: socket.socket, accepted: float) -> None:
        decoder = Decoder(expect=REQ)
        try:
            data = sock.recv(65536)
            if not data.startswith(b"\0"):  # the supervisor's health check: admin `version`
                sock.sendall(b"OK 1.1.20\n")
                return
            with self.lock:
                self.accepted.append(accepted)
            if not self.script(self, sock, -1):
                return
            while data:
                try:
                    packets = decoder.feed(data)
                except ProtocolError:
                    self.garbage.append(data)
                    return
                for p in packets:
                    with self.lock:
                        self.received.append((p.type, p.args))
                    if p.type == T.GRAB_JOB_UNIQ:
                        self.grabs += 1
                        if not self.script(self, sock, self.grabs):
                            return
                data = sock.recv(65536)
        except OSError:
            return
        finally:
            sock.close()

    def drop_all(self) -> None:
        with self.lock:
            for sock in self.conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def sent_back(self, ptype: int) -> list[tuple[bytes, ...]]:
        with self.lock:
            return [args for t, args in self.received if t == ptype]

    def close(self) -> None:
        self.closing = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
        except OSError:
            pass
        self.listener.close()
        self.drop_all()


@pytest.fixture
def fake_factory() -> Iterator[Callable[[Script], FakeServer]]:
    servers: list[FakeServer] = []

    def make(script: Script) -> FakeServer:
        servers.append(FakeServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


# -- hostile input: the sequence the fake server plays ---------------------------------------

OVERSIZE = worker_mod.MAX_JOB_PACKET + 1


def send_oversized_job(sock: socket.socket) -> None:
    """A 64 MiB + 1 job: over the worker's limit, sent in full (the worker must drop it)."""
    body_head = b"H:big:1\0reverse\0u\0"
    sock.sendall(header(T.JOB_ASSIGN_UNIQ, OVERSIZE) + body_head)
    chunk = b"z" * (1 << 20)
    left = OVERSIZE - len(body_head)
    while left:
        n = min(left, len(chunk))
        sock.sendall(chunk[:n])
        left -= n


#: (what it is, bytes to send or a callable, whether the connection survives it)
HOSTILE: list[tuple[str, bytes | Callable[[socket.socket], None], bool]] = [
    ("function name not UTF-8", assign(b"H:bad:1", b"rev\xffrse"), True),
    ("handle not UTF-8", assign(b"H:\xff\xfe:2", b"reverse"), True),
    ("a function not served", assign(b"H:bad:3", b"nosuchfunction"), True),
    ("plain JOB_ASSIGN", encode(T.JOB_ASSIGN, b"H:bad:4", b"reverse", b"abc", magic=RES), True),
    ("a NOOP storm, NO_JOB, a NOOP", NOOP * 5000 + NO_JOB + NOOP, True),
    ("an unexpected packet, a job", encode(T.STATUS_RES, *[b"1"] * 5, magic=RES), True),
    ("a job over the size limit", send_oversized_job, True),
    ("an unknown packet type", header(77, 0), False),
    ("an empty handle", assign(b"", b"reverse"), False),
    ("1 MB of ERROR text", encode(T.ERROR, b"E\n", b"\xff\n\x1b[31m" * 200_000, magic=RES), False),
    ("not the protocol at all", b"HTTP/1.1 200 OK\r\n\r\n" + b"<html>" * 1000, False),
    ("a 4 GiB NOOP", header(T.NOOP, 2**32 - 1) + b"x" * 100, False),
]


def hostile_script(server: FakeServer, sock: socket.socket, grab: int) -> bool:
    """Each GRAB gets the next hostile item; the sequence cycles over reconnects."""
    if grab < 0:
        return True
    step = getattr(server, "step", 0)
    server.step = step + 1  # type: ignore[attr-defined]
    _, what, survives = HOSTILE[step % len(HOSTILE)]
    if step % len(HOSTILE) == 5:  # the unexpected packet, then a job to answer the GRAB
        what = bytes(what) + assign(b"H:bad:6", b"reverse", b"xyz")  # type: ignore[arg-type]
    if callable(what):
        what(sock)
    else:
        sock.sendall(what)
    return survives


def test_a_hostile_job_server_does_not_stop_the_worker_serving_the_others(
    supervisor_factory, gearmand: Gearmand, fake_factory
):
    fake = fake_factory(hostile_script)
    sup = supervisor_factory({"servers": [gearmand.address, fake.address], "include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    pids = sup.worker_pids()
    assert len(pids) == 1
    # Jobs at the real gearmand keep completing while the fake one plays the whole sequence.
    n = 0
    deadline = time.monotonic() + 60
    while getattr(fake, "step", 0) < len(HOSTILE) + 2 or n < 10:
        assert time.monotonic() < deadline, f"the fake server got only {fake.step} GRABs"
        out = gearman_cli(gearmand.port, "-f", "reverse", f"job{n}", timeout=10)
        assert out.returncode == 0 and out.stdout.strip() == f"job{n}"[::-1].encode()
        n += 1
        sup.assert_alive()
    # The same process all along: no crash, no restart.
    assert sup.worker_pids() == pids
    log = sup.log()
    assert "crashed" not in log and "exited" not in log, log[-3000:]
    # Every job with a usable handle was answered: failed back, or run (JOB_ASSIGN).
    failed = {args[0] for args in fake.sent_back(T.WORK_FAIL)}
    assert {b"H:bad:1", b"H:\xff\xfe:2", b"H:bad:3", b"H:big:1"} <= failed
    done = fake.sent_back(T.WORK_COMPLETE)
    assert (b"H:bad:4", b"cba") in done and (b"H:bad:6", b"zyx") in done
    assert fake.garbage == [], "the worker sent bytes that are not Gearman packets"
    # The log stays readable: lines about the fake server are few and short, escaped.
    lines = log.splitlines()
    assert max(len(line) for line in lines) < 5000
    about_fake = [line for line in lines if fake.address in line]
    assert 3 <= len(about_fake) <= 30, "\n".join(about_fake)
    assert not any("\x1b" in line for line in lines)
    assert any("not UTF-8" in line or "does not serve" in line for line in about_fake)


def close_at_once(server: FakeServer, sock: socket.socket, grab: int) -> bool:
    return False


def error_on_grab(server: FakeServer, sock: socket.socket, grab: int) -> bool:
    if grab > 0:
        sock.sendall(encode(T.ERROR, b"ERR", b"go away", magic=RES))
    return True


def no_job_then_garbage(server: FakeServer, sock: socket.socket, grab: int) -> bool:
    if grab > 0:  # a valid answer first: the connection looks healthy, then it breaks
        sock.sendall(NO_JOB)
        time.sleep(0.05)
        sock.sendall(b"garbage!" * 4)
    return True


@pytest.mark.parametrize(
    "script", [close_at_once, error_on_grab, no_job_then_garbage], ids=lambda f: f.__name__
)
def test_reconnects_to_a_misbehaving_server_back_off(
    supervisor_factory, gearmand: Gearmand, fake_factory, script: Script
):
    fake = fake_factory(script)
    sup = supervisor_factory({"servers": [gearmand.address, fake.address], "include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    wait_for(lambda: fake.accepted, what="a first connection to the fake server")
    first = fake.accepted[0]
    wait_for(lambda: time.monotonic() > first + 4.5, timeout=10, what="4.5 s")
    attempts = len([t for t in fake.accepted if t <= first + 4.5])
    # Doubling from 0.1 s (retries are made every 0.5 s at most): about 6 connections in 4.5 s.
    # Without the backoff: one every 0.5 s, 10.
    assert attempts <= 7, f"{attempts} connections in 4.5 s"
    gaps = [b - a for a, b in zip(fake.accepted, fake.accepted[1:], strict=False)]
    print(script.__name__, attempts, [round(g, 2) for g in gaps])
    assert len(gaps) >= 3 and gaps[-1] > 0.6, gaps
    assert gearman_cli(gearmand.port, "-f", "reverse", "ok").stdout.strip() == b"ko"
    warnings = [
        line
        for line in sup.log().splitlines()
        if "WARNING" in line and f"server {fake.address} unavailable" in line
    ]
    assert 1 <= len(warnings) <= 2, "\n".join(warnings)


def benign_script(server: FakeServer, sock: socket.socket, grab: int) -> bool:
    if grab > 0:
        sock.sendall(NO_JOB)
    return True


def test_a_job_that_closes_fd_1_does_not_get_print_into_a_server_connection(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, fake_factory
):
    (workers_dir / "closefd.py").write_text("import os\n\ndef closefd(job):\n    os.close(1)\n")
    (workers_dir / "shout.py").write_text(
        "def shout(job):\n    print('HELLO ' * 2000, flush=True)\n    return 'said it'\n"
    )
    fake = fake_factory(benign_script)
    sup = supervisor_factory(
        {
            "servers": [gearmand.address, fake.address],
            "include": ["closefd", "shout"],
            "count": 1,
            "dedicated_count": 0,
        }
    )
    sup.wait_ready(gearmand.port, {"closefd": 1, "shout": 1})
    wait_for(lambda: fake.grabs, what="the worker at the fake server")
    [pid] = sup.worker_pids()
    assert gearman_cli(gearmand.port, "-f", "closefd", "x").returncode == 0
    # The fake server drops the worker: it reconnects with a new socket, which must not get fd 1.
    seen = len(fake.accepted)
    fake.drop_all()
    wait_for(lambda: len(fake.accepted) > seen, what="the worker reconnecting")
    out = gearman_cli(gearmand.port, "-f", "shout", "x")
    assert out.stdout.strip() == b"said it"
    assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
    time.sleep(0.2)  # let a stray write reach the fake server, if there is one
    assert fake.garbage == [], "print() wrote into the job server's connection"
    assert sup.worker_pids() == [pid]


# -- unit level: the worker's packet handling fed arbitrary bytes ---------------------------------


def connected_worker(handlers: dict | None = None) -> tuple[Worker, socket.socket]:
    w = Worker(["127.0.0.1:1"], handlers or {"f": lambda job: job.data[::-1]})
    ours, theirs = socket.socketpair()
    ours.settimeout(10)  # a worker that waits for more than the test sends gives up
    conn = w.conns[0]
    conn.sock = ours
    conn.session.state = UP
    w._by_fd[ours.fileno()] = conn
    w._poll.register(ours)
    return w, theirs


def close_worker(w: Worker, server: socket.socket) -> None:
    server.close()
    for conn in w.conns:
        if conn.sock is not None:
            conn.sock.close()
    w._wakeup.close()


def replies(server: socket.socket) -> list:
    server.setblocking(False)
    data = b""
    try:
        while chunk := server.recv(1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    return Decoder(expect=REQ).feed(data)


def serve_until_closed(w: Worker, server: socket.socket, stream: bytes) -> None:
    """Send ``stream`` then EOF; let the worker read until it has dropped the connection."""
    server.sendall(stream)
    server.shutdown(socket.SHUT_WR)
    conn = w.conns[0]
    while conn.state == UP:
        w._receive(conn)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "decoder-path"])
@pytest.mark.parametrize(
    ("handle", "function", "answer"),
    [
        (b"H:1", b"\xff\xfe", T.WORK_FAIL),
        (b"H:\xc3(", b"f", T.WORK_FAIL),
        (b"H:2", b"unknown", T.WORK_FAIL),
        (b"H:\xc3\xa9", b"f", T.WORK_COMPLETE),  # UTF-8, not ASCII: served
    ],
)
def test_a_job_with_bad_names_is_failed_back_and_the_next_one_served(
    fast: bool, handle: bytes, function: bytes, answer: int
):
    w, server = connected_worker()
    conn = w.conns[0]
    bad = assign(handle, function, b"abc")
    # Alone in one read: the fast path. Behind a NOOP: the decoder.
    server.sendall(bad if fast else NOOP + bad)
    w._receive(conn)
    *warning, first, grab = replies(server)
    assert (first.type, first.args[0]) == (answer, handle)
    assert grab.type == T.GRAB_JOB_UNIQ and conn.state == UP
    if answer == T.WORK_FAIL:  # the client is told why
        assert [(p.type, p.args[0]) for p in warning] == [(T.WORK_WARNING, handle)]
        assert warning[0].args[1].startswith(b"gearmgr: ")
    server.sendall(assign(b"H:9", b"f", b"abc"))
    w._receive(conn)
    assert [(p.type, p.args) for p in replies(server)] == [
        (T.WORK_COMPLETE, (b"H:9", b"cba")),
        (T.GRAB_JOB_UNIQ, ()),
    ]
    close_worker(w, server)


def test_a_job_without_a_handle_drops_the_connection():
    w, server = connected_worker()
    server.sendall(assign(b"", b"f"))
    w._receive(w.conns[0])
    assert w.conns[0].state == DOWN and w.jobs == 0
    close_worker(w, server)


def test_an_error_packet_is_logged_short_and_escaped_and_the_connection_reopened(caplog):
    w, server = connected_worker()
    text = b"\xff\nFAKE LOG LINE\n" * 100_000
    writer = threading.Thread(
        target=server.sendall, args=(encode(T.ERROR, b"E1", text, magic=RES),)
    )
    writer.start()
    with caplog.at_level("DEBUG", logger="gearmgr.worker"):
        while w.conns[0].state == UP:
            w._receive(w.conns[0])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "ERROR E1" in messages[0]
    assert len(messages[0]) < 500 and "\n" not in messages[0]
    assert w.conns[0].session.retry_at > 0
    server.close()  # the writer, blocked on what the worker will never read, ends
    writer.join(5)
    close_worker(w, server)


def test_repeated_failures_of_a_server_warn_once_and_back_off(caplog):
    w, server = connected_worker()
    conn = w.conns[0]
    now = 1000.0
    delays = []
    with caplog.at_level("DEBUG", logger="gearmgr.worker"):
        for _ in range(8):  # connected, then lost at once, eight times
            conn.session.state, conn.session.up_since = UP, now
            w._lost(conn, now + 0.01, "connection closed by the server")
            delays.append(conn.session.retry_at - now)
            now = conn.session.retry_at
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert delays[-1] > 8 * delays[0]
    # A connection that stayed up past STABLE_AFTER proved healthy: the backoff starts again.
    conn.session.state, conn.session.up_since = UP, now
    w._lost(conn, now + worker_mod.STABLE_AFTER + 1, "connection closed by the server")
    assert conn.session.failures == 1
    close_worker(w, server)


def test_an_oversized_job_is_failed_without_holding_its_body(monkeypatch):
    monkeypatch.setattr(worker_mod, "MAX_JOB_PACKET", 1 << 16)
    w, server = connected_worker()
    conn = w.conns[0]
    big = assign(b"H:big", b"f", b"y" * (1 << 20))
    writer = threading.Thread(target=server.sendall, args=(big + assign(b"H:ok", b"f", b"ab"),))
    writer.start()
    while w.jobs < 1:
        w._receive(conn)
        assert conn.session.decoder._size < (1 << 17)  # holds no more than about one read
    writer.join(5)
    packets = [(p.type, p.args[:1]) for p in replies(server)]
    assert (T.WORK_FAIL, (b"H:big",)) in packets and (T.WORK_COMPLETE, (b"H:ok",)) in packets
    close_worker(w, server)


# Packets a hostile server could send: whole valid-looking ones with odd fields, cut ones,
# wrong sizes, unknown types, raw junk.
names = st.sampled_from([b"f", b"g", b"\xff\xfe", b"", b"H:1", b"\xc3\xa9"]) | st.binary(max_size=6)
no_nul = names.map(lambda b: b.replace(b"\0", b""))
packet_bytes = st.one_of(
    st.builds(assign, no_nul, no_nul, st.binary(max_size=40), no_nul),
    st.builds(
        lambda t, body: header(t, len(body)) + body,
        st.sampled_from([int(t) for t in PacketType] + [0, 5, 99]),
        st.binary(max_size=40),
    ),
    st.builds(
        lambda t, size, body: header(t, size) + body,
        st.sampled_from([int(t) for t in PacketType]),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=20),
    ),
    st.binary(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packet_bytes, max_size=8).map(b"".join), st.booleans())
def test_the_worker_survives_any_bytes_from_a_server(stream: bytes, several: bool):
    w, server = connected_worker()
    w._direct = not several
    try:
        serve_until_closed(w, server, stream)  # must not raise
        assert w.conns[0].state == DOWN
        for packet in replies(server):  # what it sent back is well-formed
            assert packet.magic == REQ
    finally:
        close_worker(w, server)
