"""gearmgr's random delays (reconnect backoff, crash-loop backoff, lifetime jitter) come from the
operating system, never from the ``random`` module's shared generator: they still spread, and
the program's own seeded sequence (and Hypothesis's check that nothing moves it while a strategy
draws, tests/test_config_limits.py) is left alone."""

from __future__ import annotations

import os
import random

from gearmgr.supervisor.lifecycle import backoff_delay
from gearmgr.wire.places import PlacesSession
from gearmgr.wire.session import ServerSession


def test_backoffs_spread_without_moving_the_shared_generator() -> None:
    random.seed(1234)
    state = random.getstate()
    delays = {backoff_delay(5) for _ in range(50)}
    retries = set()
    for cls in (ServerSession, PlacesSession):
        for _ in range(25):
            session = cls("127.0.0.1:4730", ["f"], "me")
            retries.add(session.lost(100.0, "refused") - 100.0)
    assert random.getstate() == state  # the application's sequence is where it was
    assert len(delays) > 40 and all(4 * 0.9 <= d <= 4 * 1.1 for d in delays)
    assert len(retries) > 40


def test_a_forked_child_draws_differently_from_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # no reseed needed: there is no state to share
        os.write(write, repr(backoff_delay(5)).encode())
        os._exit(0)
    os.close(write)
    child = float(os.read(read, 100))
    os.waitpid(pid, 0)
    os.close(read)
    assert child != backoff_delay(5)
