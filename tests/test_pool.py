"""Unit tests of the pool (supervisor/pool.py): membership, draining, rolling replacement, timeouts
and stop deadlines as pure decisions on a fake clock. No fork, no socket: the test plays the
arbiter, carrying out the actions by hand."""

from __future__ import annotations

import pytest

from gearmgr.config import config_from_dict
from gearmgr.errors import FatalError
from gearmgr.supervisor.lifecycle import ExitReason, ProcessState, Slot
from gearmgr.supervisor.plan import dedicated_spec, make_plan
from gearmgr.supervisor.pool import (
    REPLACE_WAIT,
    TIMEOUT_GRACE,
    Kill,
    Observation,
    Pool,
    Release,
    Spawn,
    Stop,
)

S = ProcessState
IDLE = Observation("idle", 1, 0.0)


class Arbiter:
    """Carries out the pool's actions with fake pids."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.next_pid = 100
        self.log: list[object] = []

    def run(self, actions, now: float) -> None:
        for action in actions:
            self.log.append(action)
            if isinstance(action, Spawn):
                self.next_pid += 1
                action.slot.spawned(self.next_pid, now)

    def register_all(self, now: float) -> None:
        seen = {s.index: IDLE for s in self.pool.children()}
        self.run(self.pool.manage(now, seen), now)

    def exit(self, slot: Slot, now: float, reason=ExitReason.STOP, ok=True) -> None:
        slot.exited(now, exit_ok=ok, reported=reason, busy=False, jobs=(1, 0))
        release = self.pool.drained(slot)
        if release is not None:
            self.run([release], now)


def plan(config: dict | None = None, functions=("a", "b")):
    return make_plan(config_from_dict(config or {}), functions)


def started_pool(config: dict | None = None, functions=("a", "b")) -> tuple[Pool, Arbiter]:
    pool = Pool(capacity=8)
    pool.start(plan(config, functions))
    arb = Arbiter(pool)
    arb.run(pool.manage(0.0, {}), 0.0)
    arb.register_all(0.1)
    assert all(s.state is S.REGISTERED for s in pool.slots)
    return pool, arb


def test_start_spawns_every_planned_slot_with_its_own_scoreboard_index():
    pool = Pool(capacity=8)
    pool.start(plan())
    actions = pool.manage(0.0, {})
    assert [a.slot.key for a in actions if isinstance(a, Spawn)] == ["a#0", "b#0"]
    assert len({s.index for s in pool.slots}) == 2


def test_spawn_delay_paces_the_first_starts():
    pool = Pool(capacity=8, spawn_delay=0.5)
    pool.start(plan())
    arb = Arbiter(pool)
    arb.run(pool.manage(0.0, {}), 0.0)
    assert [s.state for s in pool.slots] == [S.STARTING, S.WAITING]
    assert pool.next_wake(0.0, stopping=False) == 0.5
    assert pool.manage(0.4, {}) == []
    arb.run(pool.manage(0.5, {}), 0.5)
    assert all(s.state is S.STARTING for s in pool.slots)


def test_replacement_waits_for_registration_then_drains_the_old_one():
    pool, arb = started_pool()
    old = pool.slots[0]
    assert pool.replace_functions({"a"}, broken=()) == 1
    arb.run(pool.manage(1.0, {}), 1.0)
    new = pool.slots[0]
    assert new is not old and new.state is S.STARTING and old.state is S.REGISTERED
    assert pool.by_pid(old.pid) is old  # still serving, still reaped
    arb.run(pool.manage(2.0, {new.index: Observation("starting", 0, 0.0)}), 2.0)
    assert old.state is S.REGISTERED  # not before the new one registered
    actions = pool.manage(2.1, {new.index: IDLE})
    assert (
        actions == [Stop(old)] and old.state is S.STOPPING and old.stop_reason is ExitReason.RELOAD
    )
    assert pool.restarts[("a", "reload")] == 1
    arb.exit(old, 2.5)
    assert isinstance(arb.log[-1], Release) and arb.log[-1].index == old.index


def test_replacement_that_never_registers_drains_the_old_one_after_the_wait():
    pool, arb = started_pool()
    old = pool.slots[0]
    pool.replace_functions({"a"}, broken=())
    arb.run(pool.manage(1.0, {}), 1.0)
    assert pool.manage(1.0 + REPLACE_WAIT, {}) == []
    assert pool.manage(1.1 + REPLACE_WAIT, {}) == [Stop(old)]


def test_a_replacement_that_dies_before_registering_keeps_the_old_process():
    pool, arb = started_pool()
    old = pool.slots[0]
    pool.replace_functions({"a"}, broken=())
    arb.run(pool.manage(1.0, {}), 1.0)
    new = pool.slots[0]
    arb.exit(new, 1.2, reason=ExitReason.IMPORT, ok=False)
    actions = pool.manage(1.3, {})
    assert actions == [Release(new.index)]
    assert pool.slots[0] is old and old.state is S.REGISTERED
    assert not pool.replacement and not pool.draining


def test_replacements_go_one_slot_at_a_time():
    pool, arb = started_pool({"dedicated_count": 3}, functions=("a",))
    pool.replace_functions({"a"}, broken=())
    arb.run(pool.manage(1.0, {}), 1.0)
    assert sum(1 for s in pool.slots if s.state is S.STARTING) == 1
    arb.register_all(1.1)  # the first registers: its old one drains, the second starts
    assert sum(1 for s in pool.slots if s.state is S.STARTING) == 1
    assert len(pool.draining) == 1


def test_broken_file_keeps_old_code_running():
    pool, _arb = started_pool()
    assert pool.replace_functions({"a"}, broken={"a"}) == 1
    assert pool.manage(1.0, {}) == []  # nothing could load it: the running one stays
    assert pool.slots[0].state is S.REGISTERED


def test_reconcile_adds_drains_and_queues_what_changed():
    pool, arb = started_pool()
    b = pool.slots[1]
    actions = pool.reconcile(plan({"max_jobs": 5}, ("a", "c")), set(), (), 1.0)
    assert actions == [Stop(b)] and b in pool.draining and b.stop_reason is ExitReason.RETIRE
    assert [s.key for s in pool.slots] == ["a#0", "c#0"]
    arb.run(pool.manage(1.0, {}), 1.0)
    spawned = [a.slot.key for a in arb.log[-2:] if isinstance(a, Spawn)]
    assert sorted(spawned) == ["a#0", "c#0"]  # a's replacement (new limits) and the new c


def test_capacity_check_counts_the_draining_processes():
    pool, _arb = started_pool()
    with pytest.raises(FatalError, match="at most 1000"):
        pool.check_capacity(plan(functions=[f"f{i}" for i in range(1001)]))
    pool.reconcile(plan(functions=("c",)), set(), (), 1.0)  # a and b drain
    with pytest.raises(FatalError, match="still draining"):
        pool.check_capacity(plan({"dedicated_count": 4}))


def test_heal_replaces_the_shared_processes_once_the_dedicated_one_loads_it():
    pool = Pool(capacity=8)
    pool.start(plan({"count": 1}))
    arb = Arbiter(pool)
    arb.run(pool.manage(5.0, {}), 5.0)
    arb.register_all(5.1)
    assert pool.heal({"a": 1.0}) == ["a"]
    assert [s.key for s, _ in pool.replacing] == ["all#0"]
    assert pool.heal({"a": 9.0}) == []  # started before the file broke: its code is old


def test_job_past_its_deadline_is_killed_once():
    pool, _arb = started_pool()
    slot = pool.slots[0]
    late = {slot.index: Observation("busy", 1, 10.0)}
    assert pool.manage(10.0 + TIMEOUT_GRACE, late) == []
    assert pool.manage(10.1 + TIMEOUT_GRACE, late) == [Kill(slot)]
    assert slot.stop_reason is ExitReason.TIMEOUT
    assert pool.manage(11.0 + TIMEOUT_GRACE, late) == []


def test_stop_deadline_sends_sigkill_once():
    pool, _arb = started_pool({"graceful_timeout": "2s"})
    actions = pool.stop_all(1.0)
    assert actions == [Stop(s) for s in pool.slots]
    assert pool.next_wake(1.0, stopping=True) == 3.0
    assert pool.enforce_stop_deadlines(2.9) == []
    assert pool.enforce_stop_deadlines(3.0) == [Kill(s) for s in pool.slots]
    assert pool.enforce_stop_deadlines(4.0) == []


# -- elastic pools ----------------------------------------------------------------------------


def test_grown_slots_start_with_the_next_starts_due():
    pool, arb = started_pool({"dedicated_count": 1}, ("a",))
    config = config_from_dict({})
    pool.grow([dedicated_spec(config, "a", 1), dedicated_spec(config, "a", 2)])
    arb.run(pool.manage(1.0, {}), 1.0)
    assert sorted(s.key for s in pool.dedicated("a")) == ["a#0", "a#1", "a#2"]
    assert all(s.pid for s in pool.dedicated("a"))
    assert sorted(pool.numbers("a")) == [0, 1, 2]


def test_shrink_drains_an_idle_process_and_never_a_busy_one():
    pool, arb = started_pool({"dedicated_count": 3}, ("a",))
    arb.register_all(1.0)
    busy = Observation("busy", 1, 0.0)
    slots = pool.dedicated("a")
    assert pool.shrink("a", {s.index: busy for s in slots}, 2.0) == []  # all busy: nothing
    assert len(pool.dedicated("a")) == 3
    seen = {s.index: busy for s in slots}
    seen[slots[0].index] = IDLE  # the lowest number is the only idle one
    actions = pool.shrink("a", seen, 3.0)
    assert actions == [Stop(slots[0])]
    assert slots[0].state is S.STOPPING and slots[0] in pool.draining
    assert [s.key for s in pool.dedicated("a")] == ["a#1", "a#2"]


def test_shrink_takes_a_slot_without_a_process_first():
    pool, arb = started_pool({"dedicated_count": 2}, ("a",))
    arb.register_all(1.0)
    pool.grow([dedicated_spec(config_from_dict({}), "a", 2)])  # not started yet
    actions = pool.shrink("a", {s.index: IDLE for s in pool.children()}, 2.0)
    assert len(actions) == 1 and isinstance(actions[0], Release)
    assert sorted(pool.numbers("a")) == [0, 1]


def test_plan_keeps_the_numbers_a_pool_holds_and_leaves_paused_functions_out():
    config = config_from_dict({"count": 1, "functions": {"a": {"max_processes": 4}}})
    specs = make_plan(config, ("a", "b"), current={"a": [0, 3]})
    assert [s.key for s in specs] == ["all#0", "a#0", "a#3", "b#0"]
    paused = make_plan(config, ("a", "b"), paused={"a"})
    assert [(s.key, s.functions) for s in paused] == [("all#0", ("b",)), ("b#0", ("b",))]
