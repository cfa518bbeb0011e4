"""The interpreter's work per job, without system calls: one worker's job path on a fake socket.

    python bench/job_path.py [--jobs N] [--rounds R]

A Worker with a scoreboard slot and a process title (as a forked child runs it) is fed one
JOB_ASSIGN_UNIQ per read, N times, by a socket stand-in whose ``recv`` returns a packet and whose
``sendall`` keeps nothing; the no-op function returns None. What is timed is exactly the code
between the two system calls of the real job path (recv -> codec -> Job -> function ->
scoreboard -> reply), so a change to it shows up here in nanoseconds, free of the kernel's and
gearmand's noise that bench/throughput.py includes. Reports the best and the median round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from gearmgr.scoreboard import Scoreboard
from gearmgr.wire.protocol import RES, PacketType, encode
from gearmgr.wire.session import UP
from gearmgr.worker.loop import Worker


class FakeSocket:
    """recv: the same JOB_ASSIGN_UNIQ ``left`` times, then "no answer yet" (the direct read's
    timeout, which hands over to poll); sendall: dropped."""

    def __init__(self, packet: bytes) -> None:
        self.packet = packet
        self.sent = 0
        self.left = 0

    def recv(self, size: int) -> bytes:
        if not self.left:
            raise BlockingIOError
        self.left -= 1
        return self.packet[:size]  # a new object per read, as the real recv

    def sendall(self, data: bytes) -> None:
        self.sent += 1

    def fileno(self) -> int:
        return 99


def noop(job: object) -> None:
    return None


def make_worker() -> tuple[Worker, object]:
    w = Worker(
        ["127.0.0.1:1"],
        {"noop": noop},
        scoreboard=Scoreboard(capacity=1),
        title=lambda text: None,
        counters=["noop"],
    )
    conn = w.conns[0]
    packet = encode(PacketType.JOB_ASSIGN_UNIQ, b"H:host:12345", b"noop", b"", b"", magic=RES)
    conn.sock = FakeSocket(packet)  # type: ignore[assignment]
    conn.session.state = UP
    conn.send_job = lambda data: None
    w._busy = True
    return w, conn


def round_ns(jobs: int) -> float:
    w, conn = make_worker()
    receive = w._receive
    sock = conn.sock
    sock.left = jobs  # type: ignore[union-attr]
    t0 = time.perf_counter_ns()
    while sock.left:  # type: ignore[union-attr]
        receive(conn, True)  # serves every job (one per call in versions before 2026-12-06)
    t1 = time.perf_counter_ns()
    assert w.jobs == jobs and conn.sock.sent == jobs  # type: ignore[union-attr]
    return (t1 - t0) / jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    results = [round_ns(args.jobs) for _ in range(args.rounds)]
    print(
        f"job path without system calls: best {min(results):.0f} ns/job,"
        f" median {statistics.median(results):.0f} ns/job ({args.rounds} rounds of {args.jobs})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
