"""The worker's job path in C (gearmgr/_speedups.c) answers exactly as its Python reference
(protocol._py_assigned_job, protocol._py_work_complete), on valid packets and on any bytes."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearmgr import scoreboard as sb
from gearmgr.wire import protocol
from gearmgr.wire.protocol import REQ, RES, Decoder, PacketType, encode
from gearmgr.worker import reading

speedups = pytest.importorskip(
    "gearmgr._speedups", reason="the C extension was not built (no C compiler at install)"
)
FUNCTIONS = {b"f": "entry f", b"reverse": "entry reverse"}


def test_the_package_uses_the_built_extension():
    assert protocol.SPEEDUPS and protocol.assigned_job is speedups.assigned_job


@pytest.mark.parametrize(
    ("handle", "function", "expected"),
    [
        (b"H:1", b"f", True),
        (b"H:1", b"reverse", True),
        (b"H:1", b"unknown", False),  # not ours: the session fails it back
        (b"", b"f", False),  # no handle: the session drops the connection
        (b"H:\xc3\xa9", b"f", False),  # not ASCII: the session checks it is UTF-8
    ],
)
def test_a_job_is_split_or_left_to_the_session(handle: bytes, function: bytes, expected: bool):
    for workload in (b"a\0b\0c", b"w" * 10_000):  # NULs in the workload; a large one
        data = encode(PacketType.JOB_ASSIGN_UNIQ, handle, function, b"u-1", workload, magic=RES)
        for impl in (speedups.assigned_job, protocol._py_assigned_job):
            got = impl(data, FUNCTIONS)
            if expected:
                assert got == (handle, FUNCTIONS[function], b"u-1", workload)
            else:
                assert got is None


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda h, f, u, w, cut, extra: (
                encode(PacketType.JOB_ASSIGN_UNIQ, h, f, u, w, magic=RES)[: cut or None] + extra
            ),
            st.sampled_from([b"H:1", b"", b"H:\xff", b"H\x7f"]) | st.binary(max_size=5),
            st.sampled_from([*FUNCTIONS, b"g", b""]),
            st.binary(max_size=5),
            st.binary(max_size=20),
            st.integers(-3, 0),
            st.sampled_from([b"", b"\0", encode(PacketType.NOOP, magic=RES)]),
        ),
    )
)
def test_both_implementations_agree_on_any_bytes(data: bytes):
    assert speedups.assigned_job(data, FUNCTIONS) == protocol._py_assigned_job(data, FUNCTIONS)


@given(st.binary(max_size=20), st.binary(max_size=300), st.sampled_from([b"", encode(9)]))
def test_work_complete_is_the_packet_the_decoder_reads(handle, result, then):
    handle = handle.replace(b"\0", b"")
    built = speedups.work_complete(handle, result, then)
    assert built == protocol._py_work_complete(handle, result, then)
    packets = Decoder(expect=REQ).feed(built)
    assert (packets[0].type, packets[0].args) == (PacketType.WORK_COMPLETE, (handle, result))
    assert len(packets) == (2 if then else 1)


def test_wrong_argument_types_raise_type_error():
    with pytest.raises(TypeError):
        speedups.assigned_job("text", FUNCTIONS)
    with pytest.raises(TypeError):
        speedups.work_complete(b"H:1", "text", b"")
    with pytest.raises(TypeError):
        speedups.work_complete(b"H:1")


def test_then_is_optional_as_in_python():
    assert speedups.work_complete(b"H:1", b"r") == protocol._py_work_complete(b"H:1", b"r")


def _slot_after(jobs: list[tuple[str, bool, float]], in_c: bool) -> sb.SlotView:
    board = sb.Scoreboard(capacity=2)
    writer = board.writer(1, ["f", "g"])
    if not in_c:
        writer.job_end = writer._py_job_end
    writer.start(123, 1.0, 4096)
    for n, (function, failed, duration) in enumerate(jobs, 1):
        board.words[writer.state] = sb.BUSY
        writer.job_end(writer.counter_words(function), n, failed, duration)
    view = board.read(1, functions=2)
    board.close()
    return view


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["f", "g", "past the counters"]),
            st.booleans(),
            st.sampled_from([0.0, 0.005, 0.0051, 0.1, 59.9, 60.0, 61.0])
            | st.floats(0, 1e4, allow_nan=False),
        ),
        max_size=30,
    )
)
def test_counting_a_job_in_c_stores_what_python_stores(jobs):
    in_python, in_c = _slot_after(jobs, in_c=False), _slot_after(jobs, in_c=True)
    assert in_c == in_python
    assert in_c.state == "idle" and in_c.jobs_done == len(jobs)
    assert in_c.jobs_failed == sum(failed for _, failed, _ in jobs)


def test_the_slot_writer_counts_in_c():
    board = sb.Scoreboard(capacity=1)
    writer = board.writer(0, ["f"])
    assert writer.job_end.func is speedups.count  # type: ignore[attr-defined]
    board.close()


@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(-1, 40))
def test_starting_a_job_in_c_stores_what_python_stores(handle, unique, number):
    """The job in hand (cut or padded to HAND_BYTES) and the state word BUSY, the same bytes."""
    images = []
    for in_c in (False, True):
        board = sb.Scoreboard(capacity=2)
        writer = board.writer(1, ["f"])
        writer.start(123, 1.0, 4096)
        start = writer.job_start(number)
        if in_c:
            assert start.func is speedups.job_start  # type: ignore[attr-defined]
        else:
            start = partial(writer._py_job_start, writer.job_store(number))
        start(b"x" * 300, b"y" * 300)  # a longer job before: its bytes must not show through
        start(handle, unique)
        assert board.read(1).state == "busy"
        cut = (number, handle[:128].rstrip(b"\0"), unique[:128].rstrip(b"\0"))
        assert board.in_hand(1) == (cut if number >= 0 else None)
        images.append(bytes(board.words))
        board.close()
    assert images[0] == images[1]


# A worker in pure Python (GEARMGR_PURE_PYTHON=1), in a process of its own: two jobs in a row
# served and counted, a job of another function failed back, as with the extension.
PURE_WORKER = """
import socket
from gearmgr import compiled, scoreboard as sb
from gearmgr.wire import protocol
from gearmgr.wire.protocol import REQ, RES, Decoder, PacketType as T, encode
from gearmgr.worker.loop import UP, Worker

assert compiled.speedups is None and protocol.assigned_job is protocol._py_assigned_job
board = sb.Scoreboard(capacity=1)
w = Worker(["127.0.0.1:1"], {"f": lambda job: job.data.upper()}, scoreboard=board)
ours, server = socket.socketpair()
conn = w.conns[0]
conn.sock, conn.session.state = ours, UP
for handle, function in ((b"H:1", b"f"), (b"H:2", b"f"), (b"H:3", b"g")):
    server.sendall(encode(T.JOB_ASSIGN_UNIQ, handle, function, b"u", b"abc", magic=RES))
    w._receive(conn)
server.setblocking(False)
got = [(p.type, p.args[:1]) for p in Decoder(expect=REQ).feed(server.recv(1 << 16))]
view = board.read(0, functions=1)
print(got == [
    (T.WORK_COMPLETE, (b"H:1",)), (T.GRAB_JOB_UNIQ, ()),
    (T.WORK_COMPLETE, (b"H:2",)), (T.GRAB_JOB_UNIQ, ()),
    (T.WORK_WARNING, (b"H:3",)), (T.WORK_FAIL, (b"H:3",)), (T.GRAB_JOB_UNIQ, ()),
], view.jobs_done, view.function_stats[0].done, view.state)
"""


def test_the_pure_python_job_path_serves_and_counts_jobs():
    env = {**os.environ, "GEARMGR_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PURE_WORKER], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "2", "2", "idle"]


class _Truthy:
    def __bool__(self) -> bool:
        return True


class _Seconds:
    def __float__(self) -> float:
        return 1.0


@pytest.mark.parametrize(
    "idle, jobs, job_failed, duration",
    [("idle", 1, _Truthy(), 1.0), (0, "jobs", False, _Seconds()), (0, -1, _Truthy(), 1.0)],
)
def test_a_wrong_count_argument_is_its_own_error_not_a_system_error(
    idle, jobs, job_failed, duration
):
    # A bad argument stops count() at once: no more Python code runs with the error pending
    # (which CPython turns into a SystemError naming the wrong function), nothing is stored.
    speedups.set_buckets(sb.BUCKETS)
    words = bytearray(8 * 8)
    with pytest.raises((TypeError, OverflowError)):
        speedups.count((words, 0, idle, 1, 2), None, jobs, job_failed, duration)
    assert words == bytearray(8 * 8)


def test_words_not_on_an_8_byte_boundary_are_refused():
    # uint64 stores at an odd address are undefined behaviour in C (UBSan flags them; some
    # CPUs trap): count() refuses such a buffer rather than write through it.
    speedups.set_buckets(sb.BUCKETS)
    words = bytearray(9 * 8)
    with pytest.raises(ValueError, match="8-byte"):
        speedups.count((memoryview(words)[1:], 0, 0, 1, 2), None, 5, True, 1.0)
    assert words == bytearray(9 * 8)


def test_reading_a_real_socket_in_c_returns_what_the_python_reader_returns():
    """worker/reading.py: a whole job of ours comes back split, anything else as the bytes
    read, b"" once the peer closed, BlockingIOError when SO_RCVTIMEO runs out; the same from
    the C read on the fd and from the Python read through socket.recv."""
    job = encode(PacketType.JOB_ASSIGN_UNIQ, b"H:x:1", b"f", b"u1", b"data", magic=RES)
    other = encode(PacketType.JOB_ASSIGN_UNIQ, b"H:x:2", b"g", b"u2", b"", magic=RES)
    noop = encode(PacketType.NOOP, magic=RES)
    functions = {b"f": "entry of f"}
    seen = []
    for in_c in (True, False):
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 20000))
        read = reading.job_reader(a if in_c else _NotASocket(a), functions)
        assert (getattr(read, "func", None) is speedups.recv_job) is in_c
        got = []
        for packet in (job, other, noop, job + noop):
            b.sendall(packet)
            got.append(read())
        with pytest.raises(BlockingIOError):
            read()
        b.close()
        got.append(read())
        a.close()
        seen.append(got)
    assert seen[0] == seen[1]
    assert seen[0] == [(b"H:x:1", "entry of f", b"u1", b"data"), other, noop, job + noop, b""]


class _NotASocket:
    """A stand-in with recv only (as tests and bench/job_path.py use): the Python read."""

    def __init__(self, sock: socket.socket) -> None:
        self.recv = sock.recv


@pytest.mark.parametrize("size", [0, 5, 2100, 300_000])
def test_the_c_write_sends_the_bytes_of_work_complete(size):
    """reading.complete_sender on a real socket: the peer reads work_complete's bytes exactly
    (small ones built on the stack, large ones allocated, partial writes continued), and a
    closed peer is an OSError as with sendall; stand-ins get None (the loop's sendall)."""
    a, b = socket.socketpair()
    send = reading.complete_sender(a)
    assert send is not None and send.func is speedups.send_complete  # type: ignore[attr-defined]
    assert reading.complete_sender(_NotASocket(a)) is None
    result = bytes(range(256)) * (size // 256) + b"r" * (size % 256)
    expected = protocol._py_work_complete(b"H:x:1", result, b"then")
    got = bytearray()
    reader = threading.Thread(target=lambda: _read_into(b, got, len(expected)))
    reader.start()
    send(b"H:x:1", result, b"then")
    reader.join(10)
    assert bytes(got) == expected
    b.close()
    with pytest.raises(OSError):
        for _ in range(100):  # the first send after the close may still be accepted
            send(b"H:x:1", b"", b"")
    a.close()


def _read_into(sock: socket.socket, into: bytearray, size: int) -> None:
    while len(into) < size:
        into += sock.recv(65536)


def test_the_c_loop_sends_the_sessions_grab():
    from gearmgr.wire.session import GRAB

    assert speedups.GRAB == GRAB


@pytest.mark.parametrize(
    "args",
    [
        (),
        (0, {}, (), 0, 0.0, 0),  # ctx of the wrong size
        (-1, {}, (object,) * 8, 0, 0.0, 0),  # not a file descriptor
        (0, {}, (int, None, None, None, None, 0, 0.0, None), 0, 0.0, 0),  # no Job slots
    ],
)
def test_the_c_loop_refuses_wrong_arguments_before_reading(args):
    with pytest.raises((TypeError, ValueError)):
        speedups.serve(*args)
