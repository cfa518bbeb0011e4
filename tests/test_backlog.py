"""The backlog reader (supervisor/backlog.py): kept-open admin connections in a selector, never
blocking; a fake job server on loopback answers (or does not)."""

from __future__ import annotations

import selectors
import socket
import time

from gearmgr.supervisor.backlog import BACKOFF_FIRST, TIMEOUT, BacklogReader
from tests.support import free_port, wait_for


def numeric(address: str):
    host, _, port = address.rpartition(":")
    return socket.AF_INET, (host, int(port))


class Reader:
    def __init__(self, *addresses: str, clock=time.monotonic) -> None:
        self.selector = selectors.DefaultSelector()
        self.reader = BacklogReader(tuple(addresses), numeric, clock)
        self.reader.attach(self.selector)

    def turn(self, now: float | None = None) -> None:
        """One turn of a loop: what is ready, then the tick."""
        for key, _ in self.selector.select(0.01):
            key.data.ready(key.fileobj)
        self.reader.tick(time.monotonic() if now is None else now)


def test_reads_waiting_as_total_less_running_on_one_kept_open_connection() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"
    r = Reader(address)
    r.turn()
    conn, _ = server.accept()
    conn.settimeout(5)
    for answer in (b"resize\t7\t2\t2\nother\t0\t0\t1\n.\n", b"resize\t3\t3\t3\n.\n"):
        wait_for(lambda: (r.turn(), r.reader._servers[address].asking)[1], what="a question")
        assert conn.recv(100) == b"status\n"
        conn.sendall(answer)
        wait_for(lambda: (r.turn(), not r.reader._servers[address].asking)[1], what="read")
        if answer.startswith(b"resize\t7"):  # jobs wait: the next answer wakes the loop
            assert r.reader._servers[address].eager
            assert r.reader.waiting("resize", time.monotonic()) == 5
        r.reader._servers[address].next_ask = 0.0  # ask again at once
    now = time.monotonic()
    assert r.reader.waiting("resize", now) == 0 and r.reader.counts("resize", now) == (0, 3)
    assert not r.reader._servers[address].eager  # nothing waits: answers do not wake the loop
    assert r.reader.waiting("unknown", now) == 0
    server.close()
    conn.close()
    r.reader.close()


def test_a_server_that_never_answers_costs_nothing_and_is_retried_later() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    address = f"127.0.0.1:{server.getsockname()[1]}"
    r = Reader(address)
    start = time.monotonic()
    for _ in range(20):
        r.turn(start)
    assert time.monotonic() - start < 1.0  # nothing blocked
    assert r.reader.waiting("x", start) is None  # no reading: the pools hold
    r.turn(start + TIMEOUT + 0.1)  # the question overstayed: closed, retried after a delay
    state = r.reader._servers[address]
    assert state.sock is None and state.failures == 1
    assert state.next_ask >= start + TIMEOUT + BACKOFF_FIRST
    server.close()
    r.reader.close()


def test_a_refused_connection_backs_off_doubling() -> None:
    address = f"127.0.0.1:{free_port()}"
    clock = [100.0]
    r = Reader(address, clock=lambda: clock[0])
    state = r.reader._servers[address]
    delays: list[float] = []
    for _ in range(4):
        wait_for(lambda: (r.turn(clock[0]), state.failures > len(delays))[1], what="a failure")
        delays.append(state.next_ask - clock[0])
        clock[0] = state.next_ask
    assert delays == [1.0, 2.0, 4.0, 8.0]
    r.reader.close()


def test_while_nothing_waits_an_answer_is_read_by_the_next_tick_not_by_a_wakeup() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"
    clock = [10.0]
    r = Reader(address, clock=lambda: clock[0])
    r.turn(clock[0])
    conn, _ = server.accept()
    conn.settimeout(5)
    wait_for(lambda: (r.turn(clock[0]), r.reader._servers[address].asking)[1], what="asked")
    assert conn.recv(100) == b"status\n"
    state = r.reader._servers[address]
    assert not state.watched  # the answer will not wake the loop
    assert r.reader.next_wake() == 11.0  # the next tick reads it and asks again
    conn.sendall(b"resize\t0\t0\t1\n.\n")
    clock[0] = 11.0
    wait_for(lambda: (r.reader.tick(clock[0]), state.read_at == 11.0)[1], what="read by tick")
    assert state.asking and conn.recv(100) == b"status\n"  # and asked again in the same tick
    server.close()
    conn.close()
    r.reader.close()


def test_under_pressure_the_answer_wakes_the_loop_and_every_answer_vouches_for_its_server() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"
    heard: list[tuple[str, float]] = []
    pressure = [False]
    selector = selectors.DefaultSelector()
    reader = BacklogReader(
        (address,),
        numeric,
        pressure=lambda: pressure[0],
        answered=lambda a, now: heard.append((a, now)),
    )
    reader.attach(selector)
    state = reader._servers[address]

    def turn() -> None:
        for key, _ in selector.select(0.01):
            key.data.ready(key.fileobj)
        reader.tick(time.monotonic())

    turn()
    conn, _ = server.accept()
    conn.settimeout(5)
    wait_for(lambda: (turn(), state.asking)[1], what="asked")
    assert conn.recv(100) == b"status\n" and not state.watched  # idle: read by the next tick
    conn.sendall(b"resize\t0\t0\t1\n.\n")
    state.next_ask = 0.0
    wait_for(lambda: (turn(), len(heard) == 1)[1], what="read by a tick")
    assert heard[0][0] == address
    pressure[0] = True  # every process of an elastic pool is busy: a backlog is likely
    wait_for(lambda: (turn(), state.asking)[1], what="asked again")
    assert conn.recv(100) == b"status\n" and state.watched  # the answer wakes the loop
    conn.sendall(b"resize\t4\t1\t1\n.\n")
    assert selector.select(5.0)  # the selector reports it: no waiting for the next tick
    turn()
    assert len(heard) == 2 and reader.waiting("resize", time.monotonic()) == 3
    server.close()
    conn.close()
    reader.close()


def test_a_server_vouched_for_by_the_backlog_reader_is_not_checked_on_its_own() -> None:
    from gearmgr.supervisor.probe import ServerProbe

    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"
    reports: list[tuple[str, bool]] = []
    probe = ServerProbe((address,), lambda a, up: reports.append((a, up)), interval=5.0)
    selector = selectors.DefaultSelector()
    probe.attach(selector)
    probe.vouch(address, 100.0)
    assert reports == [(address, True)]  # an answer elsewhere says it is up
    assert probe.next_wake() == 105.0  # no round before the vouch is old
    probe.tick(101.0)
    assert not probe._queries  # nothing connected
    probe.vouch(address, 104.0)
    assert probe.next_wake() == 109.0
    probe.tick(109.0)  # nobody vouched for five seconds: the probe checks it itself
    assert probe._queries
    probe.close()
    server.close()
