"""The asyncio worker loop against a scripted job server on a loopback socket (no gearmand,
no fork): it never holds more jobs than places, and writes several replies and GRABs at once."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from gearmgr import logs
from gearmgr.wire.protocol import REQ, RES, Decoder, PacketType, encode
from gearmgr.worker.aio import AsyncWorker

T = PacketType
PLACES = 4
JOBS = 12


@pytest.fixture(autouse=True)
def _keep_log_label():
    """The loop names its process in the log (set_label): the later tests' process stays."""
    label = logs._label.label
    yield
    logs.set_label(label)


class Gate:
    """Jobs wait until PLACES of them are in hand, then all end in the same loop turn."""

    def __init__(self) -> None:
        self.started = 0
        self.event: asyncio.Event | None = None

    async def run(self, job) -> bytes:
        if self.event is None or self.event.is_set():
            self.event = asyncio.Event()
        event = self.event
        self.started += 1
        if self.started % PLACES == 0:
            event.set()
        await event.wait()
        return job.data.upper()


def serve(gate: Gate) -> tuple[socket.socket, socket.socket, AsyncWorker, threading.Thread]:
    """A listening socket, an AsyncWorker of function ``up`` in a thread, its connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    worker = AsyncWorker([f"127.0.0.1:{port}"], {"up": gate.run}, concurrency=PLACES)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.settimeout(10)
    return listener, conn, worker, thread


def test_grabs_never_exceed_the_places_and_replies_go_out_together():
    gate = Gate()
    listener, conn, worker, thread = serve(gate)
    decoder = Decoder(expect=REQ)
    left, in_hand, done = JOBS, 0, 0
    writes: list[tuple[int, int]] = []  # (WORK_COMPLETEs, GRABs) in each read
    results: list[bytes] = []
    registered: list[int] = []
    try:
        while done < JOBS:
            packets = decoder.feed(conn.recv(65536))
            kinds = [p.type for p in packets]
            writes.append((kinds.count(T.WORK_COMPLETE), kinds.count(T.GRAB_JOB_UNIQ)))
            out = []
            for packet in packets:
                if packet.type in (T.SET_CLIENT_ID, T.CAN_DO):
                    registered.append(packet.type)
                elif packet.type == T.WORK_COMPLETE:
                    in_hand -= 1
                    done += 1
                    results.append(packet.args[1])
                elif packet.type == T.GRAB_JOB_UNIQ:
                    if left:
                        n = JOBS - left
                        out.append(
                            encode(
                                T.JOB_ASSIGN_UNIQ,
                                f"H:{n}".encode(),
                                b"up",
                                b"",
                                b"j%d" % n,
                                magic=RES,
                            )
                        )
                        left -= 1
                        in_hand += 1
                        assert in_hand <= PLACES  # the server never counts more than the places
                    else:
                        out.append(encode(T.NO_JOB, magic=RES))
            if out:
                conn.sendall(b"".join(out))
    finally:
        worker.stop()
        thread.join(10)
        conn.close()
        listener.close()
    assert not thread.is_alive()
    assert registered == [T.SET_CLIENT_ID, T.CAN_DO]
    assert sorted(results) == sorted(b"J%d" % n for n in range(JOBS))
    # jobs that end in the same loop turn: their replies and the next GRABs in one write
    assert any(completes >= 2 and grabs >= 2 for completes, grabs in writes), writes


def test_a_stopping_process_leaves_when_the_server_holding_its_grab_goes_away():
    listener, conn, worker, thread = serve(Gate())
    decoder = Decoder(expect=REQ)
    kinds: list[int] = []
    while T.GRAB_JOB_UNIQ not in kinds:
        kinds += [p.type for p in decoder.feed(conn.recv(65536))]
    worker.stop()  # a GRAB is unanswered: the process waits for its answer...
    thread.join(0.2)
    assert thread.is_alive()
    conn.close()  # ...until the server that owes it goes away
    thread.join(10)
    listener.close()
    assert not thread.is_alive()


def test_a_server_sending_garbage_is_dropped_and_reconnected_to_with_places_intact():
    listener, conn, worker, thread = serve(Gate())
    decoder = Decoder(expect=REQ)
    try:
        kinds: list[int] = []
        while T.GRAB_JOB_UNIQ not in kinds:
            kinds += [p.type for p in decoder.feed(conn.recv(65536))]
        conn.sendall(b"this is not the gearman protocol")
        assert conn.recv(65536) == b""  # the worker hung up on it
        conn.close()
        conn, _ = listener.accept()  # and came back (after its backoff)
        conn.settimeout(10)
        decoder = Decoder(expect=REQ)
        kinds = []
        while T.GRAB_JOB_UNIQ not in kinds:
            kinds += [p.type for p in decoder.feed(conn.recv(65536))]
        assert kinds.count(T.GRAB_JOB_UNIQ) == 1  # a fresh window: one GRAB, places all free
        conn.sendall(encode(T.NO_JOB, magic=RES))
        kinds = []
        while T.PRE_SLEEP not in kinds:
            kinds += [p.type for p in decoder.feed(conn.recv(65536))]
        assert worker.places is not None and worker.places.free() == PLACES
    finally:
        worker.stop()
        thread.join(10)
        conn.close()
        listener.close()
    assert not thread.is_alive()


def test_jobs_a_server_sends_without_a_grab_are_failed_back_not_run_past_the_places():
    # A hostile server pushes 3x the places in jobs after the first GRAB: the process never
    # runs more than its places at once, and every job gets an answer (none dropped).
    running, peak = [0], [0]

    async def hold(job) -> bytes:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.5)
        running[0] -= 1
        return b"done"

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    worker = AsyncWorker([f"127.0.0.1:{port}"], {"hold": hold}, concurrency=PLACES)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.settimeout(10)
    decoder = Decoder(expect=REQ)
    answers: dict[bytes, list[int]] = {}
    warnings: list[bytes] = []
    pushed = False
    try:
        while len([h for h, kinds in answers.items() if T.WORK_FAIL in kinds or
                   T.WORK_COMPLETE in kinds]) < 3 * PLACES:  # fmt: skip
            out = []
            for packet in decoder.feed(conn.recv(65536)):
                if packet.type == T.GRAB_JOB_UNIQ and not pushed:
                    pushed = True
                    out += [
                        encode(T.JOB_ASSIGN_UNIQ, b"H:%d" % n, b"hold", b"", b"x", magic=RES)
                        for n in range(3 * PLACES)
                    ]
                elif packet.type == T.GRAB_JOB_UNIQ:
                    out.append(encode(T.NO_JOB, magic=RES))
                elif packet.type in (T.WORK_FAIL, T.WORK_COMPLETE, T.WORK_WARNING):
                    answers.setdefault(packet.args[0], []).append(packet.type)
                    if packet.type == T.WORK_WARNING:
                        warnings.append(packet.args[1])
            if out:
                conn.sendall(b"".join(out))
    finally:
        worker.stop()
        thread.join(10)
        conn.close()
        listener.close()
    assert not thread.is_alive()
    assert peak[0] <= PLACES
    assert sorted(answers) == sorted(b"H:%d" % n for n in range(3 * PLACES))
    assert warnings and all(b"no GRAB" in w for w in warnings), warnings


def test_a_server_that_does_not_read_is_not_read_either():
    # A server pushes jobs and never reads what the process writes back (their failures): the
    # process stops reading it once its write buffer is full, so what it holds stays bounded
    # instead of growing with what the server sends.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    worker = AsyncWorker([f"127.0.0.1:{port}"], {"hold": Gate().run}, concurrency=PLACES)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.settimeout(3)
    push = b"".join(
        encode(T.JOB_ASSIGN_UNIQ, b"H:%d" % n, b"hold", b"", b"x", magic=RES) for n in range(2000)
    )
    sent = 0
    try:
        while sent < 40 << 20:  # 40 MiB of jobs, unless the process stops reading first
            try:
                conn.sendall(push)
            except TimeoutError:
                break
            sent += len(push)
        link = worker.links[0]
        held = link.transport.get_write_buffer_size() if link.transport else 0
    finally:
        worker.stop()
        conn.close()
        listener.close()
        thread.join(10)
    assert sent < 40 << 20, "the process read everything the server sent"
    assert held < 8 << 20, f"{held} bytes waiting to be written"
