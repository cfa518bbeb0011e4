"""The scaling decision of elastic pools (supervisor/scaling.py), without processes: a fake
clock, readings of the backlog, and a simulated queue for the anti-flapping case."""

from __future__ import annotations

import itertools
import random

import pytest

from gearmgr.supervisor.scaling import GROW_BURST, TICK, Bounds, Decision, History, decide

ROOM = 1000


def run(size: int, bounds: Bounds, waiting: int, ticks: int, start: float = 0.0) -> list[int]:
    """The sizes after each tick with a constant reading of ``waiting``."""
    history, sizes, now = History(), [], start
    for _ in range(ticks):
        decision = decide(size, bounds, waiting, history, now, ROOM)
        size, history = decision.target, decision.history
        sizes.append(size)
        now += TICK
    return sizes


def test_growth_adds_a_burst_or_doubles_per_tick_up_to_the_ceiling() -> None:
    assert GROW_BURST == 8
    assert run(1, Bounds(1, 8), waiting=100, ticks=3) == [8, 8, 8]
    assert run(1, Bounds(1, 100), waiting=1000, ticks=6) == [9, 18, 36, 72, 100, 100]
    assert run(1, Bounds(1, 100), waiting=3, ticks=3) == [4, 4, 4]  # the backlog's aim


def test_the_ceiling_of_the_process_cap_is_reached_within_five_seconds() -> None:
    sizes = run(1, Bounds(1, 1000), waiting=100_000, ticks=int(5 / TICK))
    assert sizes[-1] == 1000


def test_growth_aims_at_the_floor_plus_one_process_per_backlog_per_process() -> None:
    assert run(1, Bounds(1, 50, per_process=5), waiting=12, ticks=6)[-1] == 1 + 3
    assert run(2, Bounds(2, 50), waiting=3, ticks=6)[-1] == 5


def test_growth_is_capped_by_the_room_under_the_process_limit() -> None:
    decision = decide(4, Bounds(1, 100), 500, History(), 0.0, room=2)
    assert decision.target == 6


def test_scale_from_zero_starts_a_process_for_the_first_waiting_job() -> None:
    assert decide(0, Bounds(0, 4), 1, History(), 0.0, ROOM).target == 1


def test_no_reading_holds_the_size() -> None:
    assert decide(3, Bounds(1, 8), None, History(), 100.0, ROOM).target == 3


def test_below_the_floor_goes_to_the_floor() -> None:
    assert decide(0, Bounds(2, 8), 0, History(), 0.0, ROOM).target == 2


def test_shrinks_one_per_delay_only_without_waiting_jobs_and_never_below_the_floor() -> None:
    bounds = Bounds(1, 8, scale_down_delay=10.0)
    history = decide(4, bounds, 5, History(), 0.0, ROOM).history  # jobs wait at t=0
    assert history.last_waiting == 0.0
    size = 8
    history = History(last_waiting=0.0, last_change=0.0)
    assert decide(size, bounds, 0, history, 9.9, ROOM).target == 8  # not yet
    assert decide(size, bounds, 2, history, 11.0, ROOM).target == 8  # jobs wait: never shrink
    changes = []
    now = 10.0
    while now < 200:
        decision = decide(size, bounds, 0, history, now, ROOM)
        history = decision.history
        if decision.target < size:
            assert decision.target == size - 1  # one at a time
            size = decision.target
            history = history.shrunk(now)
            changes.append(now)
        now += TICK
    assert size == 1
    assert changes[0] == 10.0
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(changes))


def test_a_lowered_ceiling_drains_one_per_step() -> None:
    assert decide(6, Bounds(1, 2), 50, History(), 0.0, ROOM).target == 5


def test_growth_right_after_a_shrink_doubles_the_next_shrink_delay() -> None:
    bounds = Bounds(1, 8, scale_down_delay=10.0)
    history = History(last_shrink=100.0, last_change=100.0)
    decision = decide(2, bounds, 5, history, 102.0, ROOM)
    assert decision.target > 2 and decision.history.regrets == 1
    assert decision.history.shrink_delay(bounds) == 20.0


def simulate(
    rate: float, duration: float, bounds: Bounds, minutes: int, seed: int | None
) -> list[tuple[float, int]]:
    """A single host's pool under constant arrivals (every 1/rate s, or Poisson with ``seed``)
    of jobs of ``duration`` s; the backlog read once a second; returns (time, size) changes."""
    dt = 0.01
    rnd = random.Random(seed)
    next_arrival = 0.0
    queue = 0
    busy: list[float] = []  # the end times of running jobs
    size = bounds.floor
    history = History()
    reading: int | None = None
    next_reading = next_decision = 0.0
    changes = []
    now = 0.0
    while now < minutes * 60:
        while now >= next_arrival:
            queue += 1
            gap = rnd.expovariate(rate) if seed is not None else 1 / rate
            next_arrival += gap
        busy = [end for end in busy if end > now]
        while queue and len(busy) < size:
            queue -= 1
            busy.append(now + duration)
        if now >= next_reading:
            reading = queue
            next_reading = now + 1.0
        if now >= next_decision:
            decision: Decision = decide(size, bounds, reading, history, now, ROOM)
            history = decision.history
            if decision.target > size:
                size = decision.target
                changes.append((now, size))
            elif decision.target < size and len(busy) < size:  # only an idle one drains
                size -= 1
                history = history.shrunk(now)
                changes.append((now, size))
            next_decision = now + TICK
        now += dt
    return changes


@pytest.mark.parametrize(
    ("rate", "duration", "seed"),
    [(3.0, 1.0, None), (10.0, 0.3, None), (1.0, 2.5, None), (3.0, 1.0, 7), (20.0, 0.2, 11)],
)
def test_no_flapping_under_steady_load(rate: float, duration: float, seed: int | None) -> None:
    """At most 2 size changes in any minute once the pool has settled: the first minutes ramp
    up at once and then give back the overshoot one process per scale_down_delay (30 s, so
    that is 2 a minute too); from minute 5 to minute 15 the pool must not flap."""
    changes = simulate(rate, duration, Bounds(1, 16, scale_down_delay=30.0), 15, seed)
    later = [t for t, _ in changes if t >= 300]
    worst = max((sum(1 for u in later if t <= u < t + 60) for t in later), default=0)
    assert worst <= 2, changes
