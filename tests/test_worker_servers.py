"""A worker process serves every server in `servers`: one dead, silent, unreachable or slow server
never delays the jobs of the others, and the reconnect backoff of many processes is spread.

Integration (a real gearmand, a real supervisor) but for the last test, a unit test of the
session's backoff.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gearmgr.wire.client import Client
from gearmgr.wire.protocol import REQ, RES, Decoder, encode
from gearmgr.wire.protocol import PacketType as T
from gearmgr.wire.session import RECONNECT_MIN, ServerSession
from tests.support import Gearmand, free_port

#: Jobs through the good server; each must come back well within the time a bad server would
#: hold a worker up if it could (a connect timeout, a keep-alive of 30 s, a 1 s answer).
JOBS = 20
LATE = 0.9


class BadServer:
    """A job server that is wrong in one way, on a free loopback port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.accepted = 0
        self.stopped = threading.Event()
        self.socks: list[socket.socket] = []
        self.port = free_port()
        if kind == "refused":
            return  # nothing listens
        backlog = 0 if kind == "unreachable" else 16
        self.listener = socket.create_server(("127.0.0.1", self.port), backlog=backlog)
        if kind == "unreachable":
            # Fill the accept queue and never accept: further SYNs are dropped, so connecting
            # hangs as to a host that is down behind a firewall.
            for _ in range(2):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", self.port))
                self.socks.append(filler)
            return
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.socks.append(sock)
            if self.kind == "slow":
                threading.Thread(target=self._slow, args=(sock,), daemon=True).start()
            # "silent": accepted, read by nobody, answered never

    def _slow(self, sock: socket.socket) -> None:
        """Every GRAB answered with NO_JOB, a second late and a byte at a time."""
        decoder = Decoder(expect=REQ)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                for packet in decoder.feed(chunk):
                    if packet.type == T.GRAB_JOB_UNIQ:
                        for byte in encode(T.NO_JOB, magic=RES):
                            if self.stopped.wait(1.0 / 12):
                                return
                            sock.sendall(bytes([byte]))

    def close(self) -> None:
        self.stopped.set()
        for sock in self.socks:
            sock.close()
        if hasattr(self, "listener"):
            self.listener.close()


@pytest.fixture
def bad_factory() -> Iterator[Callable[[str], BadServer]]:
    made: list[BadServer] = []

    def make(kind: str) -> BadServer:
        made.append(BadServer(kind))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.mark.parametrize("kind", ["refused", "unreachable", "silent", "slow"])
def test_one_bad_server_never_delays_the_jobs_of_the_others(
    supervisor_factory, gearmand: Gearmand, bad_factory, kind: str
) -> None:
    bad = bad_factory(kind)
    # the bad server first: a worker that served its servers in turn would meet it first
    sup = supervisor_factory({"servers": [bad.address, gearmand.address], "include": ["reverse"]})
    sup.wait_ready(gearmand.port, {"reverse": 1})
    if kind in ("silent", "slow"):
        assert bad.accepted >= 1, "the worker should be connected to the bad server"
    latencies = []
    with Client([gearmand.address], timeout=30) as client:
        for i in range(JOBS):
            start = time.monotonic()
            assert client.submit("reverse", f"job{i}") == f"job{i}"[::-1].encode()
            latencies.append(time.monotonic() - start)
    # generous: a job takes milliseconds; one delayed by the bad server takes a second or more
    assert statistics.median(latencies) < 0.3, latencies
    assert sum(lat > LATE for lat in latencies) <= 1, latencies
    sup.assert_alive()


def test_the_reconnects_of_many_processes_after_one_outage_are_spread() -> None:
    # 200 processes lose the same server at the same moment; their retries must not all land
    # at the same instant (jittered backoff), at any step of the backoff.
    sessions = [ServerSession("gm1:4730", ["f"], f"p{i}") for i in range(200)]
    for failures in range(1, 6):
        retries = [s.lost(100.0, "server gone") - 100.0 for s in sessions]
        nominal = RECONNECT_MIN * 2 ** (failures - 1)
        assert all(0.75 * nominal <= r <= 1.25 * nominal for r in retries)
        spread = max(retries) - min(retries)
        assert spread > 0.3 * nominal, f"step {failures}: all retries within {spread:.3f}s"
        assert len({round(r, 6) for r in retries}) > 150  # 200 draws: nearly all distinct
