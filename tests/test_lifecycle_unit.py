"""Unit tests of the process lifecycle (supervisor/lifecycle.py): states, guarded transitions,
exit reasons and the backoff, on a fake clock. No fork, no socket."""

from __future__ import annotations

import itertools

import pytest

from gearmgr import scoreboard as sb
from gearmgr.config import config_from_dict
from gearmgr.supervisor.lifecycle import (
    BACKOFF_MAX,
    STABLE_AFTER,
    ExitReason,
    Lifecycle,
    ProcessState,
    Slot,
    TransitionError,
    backoff_delay,
)
from gearmgr.supervisor.plan import make_plan

S = ProcessState


def slot() -> Slot:
    return Slot(make_plan(config_from_dict({}), ["a"])[0], index=0)


def crash(s: Lifecycle, now: float, busy: bool = False, jobs=(0, 0)):
    return s.exited(now, exit_ok=False, reported=ExitReason.CRASH, busy=busy, jobs=jobs)


def test_first_quick_death_restarts_at_once_then_backs_off():
    s = slot()
    now = 100.0
    delays = []
    for _ in range(6):
        assert s.due(now)
        s.spawned(pid=1, now=now)
        assert s.state is S.STARTING and not s.due(now)
        now += 0.1  # dies quickly
        delays.append(crash(s, now).delay)
        assert s.state in (S.WAITING, S.BACKOFF)
        assert not s.due(now) or delays[-1] == 0
        now = s.next_start
    assert delays[0] == 0
    assert all(later > earlier for earlier, later in itertools.pairwise(delays[1:]))


@pytest.mark.parametrize("failures", [20, 50, 100])
def test_backoff_is_capped(failures: int):
    assert backoff_delay(failures) <= BACKOFF_MAX * 1.1


def test_stable_productive_run_resets_the_backoff():
    s = slot()
    now = 0.0
    for _ in range(5):
        s.spawned(1, now)
        now += 0.1
        crash(s, now)
        now = s.next_start
    assert s.failures == 5
    s.spawned(1, now)
    assert crash(s, now + STABLE_AFTER + 1, jobs=(3, 0)).delay == 0
    assert s.failures == 1


def test_a_long_run_killed_by_its_first_job_still_counts_toward_the_backoff():
    s = slot()
    s.failures = 3
    s.spawned(1, 0.0)
    out = crash(s, STABLE_AFTER * 10, busy=True, jobs=(0, 0))
    assert s.failures == 4 and out.delay > 0 and s.state is S.BACKOFF


def test_clean_recycle_restarts_at_once_and_clears_failures():
    s = slot()
    s.failures = 4
    s.spawned(1, 10.0)
    out = s.exited(10.5, exit_ok=True, reported=ExitReason.MAX_JOBS, busy=False, jobs=(5, 0))
    assert out.delay == 0 and out.restart is ExitReason.MAX_JOBS and out.reason.label == "max_jobs"
    assert s.failures == 0 and s.due(10.5) and s.pid == 0


@pytest.mark.parametrize("reason", [ExitReason.TIMEOUT, ExitReason.MAX_MEMORY])
def test_timeout_and_memory_recycles_count_toward_the_backoff_even_with_status_0(reason):
    s = slot()
    now = 0.0
    delays = []
    for _ in range(3):
        s.spawned(1, now)
        delays.append(s.exited(now + 1, exit_ok=True, reported=reason, busy=True, jobs=(0, 0)))
        now = s.next_start
    assert [d.restart for d in delays] == [reason] * 3
    assert delays[0].delay == 0 and delays[1].delay > 0 and s.failures == 3


def test_worker_that_says_stop_without_being_asked_is_a_crash():
    s = slot()
    s.spawned(1, 0.0)
    out = s.exited(1.0, exit_ok=True, reported=ExitReason.STOP, busy=False, jobs=(0, 0))
    assert out.reason is ExitReason.CRASH and out.restart is ExitReason.CRASH and not out.asked


def test_stop_asked_by_the_supervisor_is_no_restart():
    s = slot()
    s.spawned(7, 0.0)
    assert s.stop(1.0, grace=30, reason=ExitReason.STOP)
    assert s.state is S.STOPPING and s.kill_at == 31.0
    out = s.exited(2.0, exit_ok=True, reported=ExitReason.STOP, busy=False, jobs=(0, 0))
    assert out.restart is None and out.asked and out.delay == 0 and s.state is S.WAITING


def test_second_stop_keeps_the_first_deadline_unless_forced_by_a_timeout_kill():
    s = slot()
    s.spawned(7, 0.0)
    s.stop(1.0, 30, ExitReason.RELOAD)
    assert not s.stop(2.0, 3600, ExitReason.STOP)
    assert s.kill_at == 31.0 and s.stop_reason is ExitReason.RELOAD
    assert s.stop(3.0, 0, ExitReason.TIMEOUT, force=True)
    assert s.kill_at == 3.0 and s.stop_reason is ExitReason.TIMEOUT
    out = s.exited(3.1, exit_ok=False, reported=ExitReason.CRASH, busy=True, jobs=(0, 0))
    assert out.reason is ExitReason.TIMEOUT and out.restart is ExitReason.TIMEOUT


def test_reload_replacement_is_a_clean_restart():
    s = slot()
    s.spawned(7, 0.0)
    s.stop(1.0, 30, ExitReason.RELOAD)
    out = s.exited(1.5, exit_ok=False, reported=ExitReason.CRASH, busy=False, jobs=(0, 0))
    assert out.restart is ExitReason.RELOAD and out.delay == 0 and s.failures == 0


def test_registered_needs_code_loaded_and_a_server_connected():
    s = slot()
    s.spawned(7, 0.0)
    assert not s.observe("starting", 1)
    assert not s.observe("idle", 0)
    assert s.state is S.STARTING and s.code_loaded
    assert s.observe("busy", 1)
    assert s.state is S.REGISTERED
    assert not s.observe("idle", 1)  # once per process
    s.stop(1.0, 5, ExitReason.STOP)
    assert not s.observe("idle", 1) and s.state is S.STOPPING


def test_transitions_are_guarded():
    s = slot()
    with pytest.raises(TransitionError):
        s.stop(0.0, 1, ExitReason.STOP)  # nothing runs
    with pytest.raises(TransitionError):
        crash(s, 0.0)
    s.spawned(1, 0.0)
    with pytest.raises(TransitionError):
        s.spawned(2, 0.0)  # one process per slot
    with pytest.raises(TransitionError):
        s.killed(0.0)  # SIGKILL at the deadline only once asked to stop


def test_fork_failure_counts_as_a_quick_death():
    s = slot()
    s.failures = 2
    assert s.spawn_failed(5.0) > 0
    assert s.state is S.BACKOFF and not s.due(5.0) and s.failures == 3


def test_embedded_server_restarts_share_the_backoff():
    life = Lifecycle()
    now = 0.0
    delays = []
    for _ in range(4):
        life.spawned(100, now)
        delays.append(life.died(now + 1))
        now = life.next_start
    assert delays[0] == 0 and delays[1] > 0 and delays[3] > delays[2]
    life.spawned(100, now)
    assert life.died(now + STABLE_AFTER + 1) == 0  # a stable run: at once again


def test_exit_reasons_are_the_scoreboards_codes_and_words():
    assert ExitReason.IMPORT == sb.REASON_NO_FUNCTIONS and ExitReason.IMPORT.label == "import"
    assert ExitReason.CRASH.label == "crash" and ExitReason.RELOAD.label == "reload"
    for code, word in sb.REASON_NAMES.items():
        assert ExitReason.from_label(word) == code
