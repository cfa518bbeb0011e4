"""Unit tests of the snapshot (supervisor/snapshot.py) and of what status and metrics make of
it: no supervisor, no fork, no socket; a scoreboard in memory."""

from __future__ import annotations

import dataclasses

from gearmgr import scoreboard as sb
from gearmgr.config import config_from_dict
from gearmgr.ops.metrics import SupervisorCollector
from gearmgr.ops.status import build_status, format_status, summary
from gearmgr.supervisor.lifecycle import ExitReason, Slot
from gearmgr.supervisor.plan import make_plan
from gearmgr.supervisor.snapshot import FailureStats, Snapshot, take_snapshot


def snap_of(board: sb.Scoreboard, slots: list[Slot], **kw) -> Snapshot:
    args = dict(
        pid=1,
        started_at=0.0,
        config_path=None,
        servers=("127.0.0.1:4730",),
        servers_up={"127.0.0.1:4730": True},
        planned=slots,
        live=[s for s in slots if s.pid],
        loaded={s.index: list(s.spec.functions) for s in slots if s.pid},
        totals={"a": sb.FunctionStats(done=5, failed=1)},
        scoreboard=board,
        served=("a", "b"),
        broken=(),
        restarts={("a", "max_jobs"): 2},
        stopping=False,
    )
    args.update(kw)
    return take_snapshot(**args)  # type: ignore[arg-type]


def slots_for(board: sb.Scoreboard) -> list[Slot]:
    plan = make_plan(config_from_dict({}), ["a", "b"])
    slots = [Slot(spec, i) for i, spec in enumerate(plan)]
    slots[0].spawned(100, 0.0)
    w, base = board.words, board.base(0)
    w[base + sb.STATE] = sb.BUSY
    w[base + sb.JOBS_DONE] = 3
    w[base + sb.FUNC_BASE + sb.F_DONE] = 3
    w[base + sb.SERVERS_CONNECTED] = 1
    return slots  # b#0 waits to start


def test_snapshot_adds_exited_and_live_counters_and_counts_waiting():
    board = sb.Scoreboard(4)
    snap = snap_of(board, slots_for(board))
    assert snap.function_stats["a"].done == 8 and snap.function_stats["a"].failed == 1
    assert snap.function_stats["b"].done == 0
    assert [(p.pid, p.key, p.state, p.jobs) for p in snap.processes] == [(100, "a#0", "busy", 3)]
    assert snap.waiting == 1 and snap.uptime > 0


def test_a_process_being_stopped_shows_stopping_and_a_starting_one_idle():
    board = sb.Scoreboard(4)
    slots = slots_for(board)
    slots[1].spawned(101, 0.0)  # scoreboard still empty: importing its code
    slots[0].stop(1.0, 30, ExitReason.RELOAD)
    states = {p.key: p.state for p in snap_of(board, slots).processes}
    assert states == {"a#0": "stopping", "b#0": "idle"}


def test_status_and_its_table_read_the_snapshot_alone():
    board = sb.Scoreboard(4)
    snap = snap_of(board, slots_for(board), restarts={("a", "max_jobs"): 2, ("gone", "crash"): 1})
    status = build_status(snap)
    assert status["functions"]["a"] == {
        "processes": 1,
        "jobs_done": 8,
        "jobs_failed": 1,
        "restarts": {"max_jobs": 2},
        "removed": False,
        "deaths": 0,
        "quarantined": 0,
    }
    assert status["functions"]["gone"]["removed"]
    assert status["servers"] == [{"address": "127.0.0.1:4730", "connected": True}]
    assert "a#0" not in format_status(status) and "max_jobs=2" in format_status(status)
    assert summary(snap) == "1 process (1 busy), 9 jobs done, 1 waiting to start"


def test_metrics_collect_from_a_snapshot_callable():
    board = sb.Scoreboard(4)
    snap = snap_of(board, slots_for(board))
    families = {f.name: f for f in SupervisorCollector(lambda: snap).collect()}  # type: ignore[attr-defined]
    jobs = {tuple(s.labels.values()): s.value for s in families["gearmgr_jobs"].samples}
    assert jobs[("a", "complete")] == 8
    workers = {tuple(s.labels.values()): s.value for s in families["gearmgr_workers"].samples}
    assert workers[("a", "busy")] == 1 and workers[("b", "idle")] == 0


def test_failed_jobs_in_status_and_metrics():
    board = sb.Scoreboard(4)
    failures = FailureStats(
        recorded={"exception": 2, "timeout": 1, "quarantined": 1, "lost": 0},
        deaths={"a": 3},
        quarantined={"a": 1},
        in_quarantine=1,
        database="/srv/failed.db",
    )
    snap = dataclasses.replace(snap_of(board, slots_for(board)), failures=failures)
    status = build_status(snap)
    assert status["functions"]["a"]["quarantined"] == 1
    assert status["functions"]["a"]["deaths"] == 3
    assert status["failed_jobs"]["recorded"]["exception"] == 2
    assert status["failed_jobs"]["quarantined"] == 1
    assert (
        "failed jobs: 4 recorded (exception 2, timeout 1, quarantined 1); 3 deaths during jobs,"
        " 1 quarantined (`gearmgr failed` lists them)"
    ) in format_status(status)
    families = {f.name: f for f in SupervisorCollector(lambda: snap).collect()}  # type: ignore[attr-defined]
    quarantined = {
        s.labels["function"]: s.value for s in families["gearmgr_jobs_quarantined"].samples
    }
    assert quarantined["a"] == 1 and quarantined["b"] == 0
    recorded = {
        s.labels["reason"]: s.value for s in families["gearmgr_failed_jobs_recorded"].samples
    }
    assert recorded == {"exception": 2, "timeout": 1, "quarantined": 1, "lost": 0}


def test_a_process_with_places_shows_its_jobs_in_hand_in_status_metrics_and_the_table():
    board = sb.Scoreboard(4)
    slots = slots_for(board)
    writer = board.writer(0, ["a"])
    writer.set(writer.places, 64)
    writer.set(writer.in_hand, 17)
    snap = snap_of(board, slots)
    status = build_status(snap)
    [proc] = status["processes"]
    assert (proc["in_hand"], proc["places"]) == (17, 64)
    assert "busy 17/64" in format_status(status)
    families = {f.name: f for f in SupervisorCollector(lambda: snap).collect()}  # type: ignore[attr-defined]
    in_hand = {s.labels["function"]: s.value for s in families["gearmgr_jobs_in_hand"].samples}
    places = {s.labels["function"]: s.value for s in families["gearmgr_places"].samples}
    assert (in_hand["a"], places["a"]) == (17, 64)


def test_a_sync_process_has_one_place_and_holds_a_job_while_busy():
    board = sb.Scoreboard(4)
    snap = snap_of(board, slots_for(board))
    [proc] = snap.processes
    assert (proc.in_hand, proc.places) == (1, 1)
    assert "busy 1/1" not in format_status(build_status(snap))
