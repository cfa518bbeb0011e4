"""`gearmgr top` without processes: the supervisor's answer from snapshots on a fake clock
(rates, percentiles, how long a job has been in hand) and the frame renderer (fits, scrolls,
widens, plain text)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gearmgr.cli import topframe as tf
from gearmgr.cli.top import scaled
from gearmgr.ops.top import MIN_SPACING, MIN_WINDOW, TopFeed, delta, quantile
from gearmgr.scoreboard import BUCKETS, FunctionStats
from gearmgr.supervisor.snapshot import EmptySlot, PoolView, ProcessView, Snapshot


def stats(done: int, failed: int = 0, durations: dict[float, int] | None = None) -> FunctionStats:
    buckets = [0] * len(BUCKETS)
    for bound, n in (durations or {}).items():
        buckets[BUCKETS.index(bound)] += n
    return FunctionStats(done, failed, 0.0, tuple(buckets))


def proc(pid: int, state: str = "idle", jobs: int = 0, functions: tuple[str, ...] = ("a",)):
    return ProcessView(pid, f"{functions[0]}#{pid}", functions, state, jobs, 0, 1 << 24, 0.0, 1)


def snap(
    function_stats: dict[str, FunctionStats],
    processes: tuple[ProcessView, ...] = (),
    empty: tuple[EmptySlot, ...] = (),
) -> Snapshot:
    pools = {name: PoolView(0, 0, 1, 1, 4, False) for name in function_stats}
    return Snapshot(
        pid=1,
        started_at=0.0,
        taken_at=100.0,
        config_path=None,
        servers=(("127.0.0.1:4730", True),),
        processes=processes,
        served=tuple(function_stats),
        broken=(),
        function_stats=function_stats,
        restarts={},
        stopping=False,
        waiting=len(empty),
        pools=pools,
        empty_slots=empty,
    )


def test_quantile_interpolates_inside_its_bucket_as_prometheus_does() -> None:
    # 10 jobs up to 10 ms, 10 jobs between 0.1 and 0.25 s
    d = stats(20, durations={0.01: 10, 0.25: 10}).buckets
    assert quantile(d, 20, 0.5) == pytest.approx(0.01)
    assert quantile(d, 20, 0.95) == pytest.approx(0.1 + 0.15 * 9 / 10)
    assert quantile(d, 0, 0.5) is None


def test_quantile_past_the_last_bound_is_the_last_bound() -> None:
    d = stats(10, durations={0.005: 1}).buckets  # nine jobs longer than 60 s
    assert quantile(d, 10, 0.95) == BUCKETS[-1]
    assert tf._percentile(quantile(d, 10, 0.95)) == ">60s"


def test_delta_never_goes_negative() -> None:
    assert delta(stats(5), stats(8)) == stats(5)  # counters went back: count from zero
    assert delta(stats(8, 2), stats(5, 1)).done == 3


def test_rates_are_over_the_last_interval_and_percentiles_over_the_window() -> None:
    feed = TopFeed()
    first = feed.answer(snap({"a": stats(100, durations={0.01: 100})}), 1.0, now=1000.0)
    assert first["functions"]["a"]["jobs_per_s"] is None  # nothing to compare with yet
    assert first["functions"]["a"]["p50"] == pytest.approx(0.0075)  # since the start
    second = feed.answer(snap({"a": stats(150, 10, durations={0.01: 100, 1.0: 60})}), 1, 1002.0)
    a = second["functions"]["a"]
    assert a["jobs_per_s"] == pytest.approx(30.0)  # 60 jobs in 2 s
    assert a["failures_per_s"] == pytest.approx(5.0)
    assert second["interval"] == pytest.approx(2.0)
    # past MIN_WINDOW of history, the percentiles leave the first 100 jobs out
    later = 1000.0 + MIN_WINDOW + 1
    third = feed.answer(snap({"a": stats(150, 10, durations={0.01: 100, 1.0: 60})}), 1, later)
    assert third["functions"]["a"]["jobs_per_s"] == 0.0
    assert third["functions"]["a"]["p50"] == pytest.approx(0.5 + 0.5 * 30 / 60)


def test_the_history_stays_short_yet_holds_the_samples_the_answers_need() -> None:
    feed = TopFeed()
    now = 0.0
    for i in range(7200):  # two hours of a client refreshing every second
        now = 10.0 + i
        answer = feed.answer(snap({"a": stats(i)}), 1.0, now)
    assert len(feed.samples) < 150
    assert answer["interval"] == pytest.approx(1.0)
    assert 50 <= answer["window"] <= 60
    slow = feed.answer(snap({"a": stats(9000)}), 600.0, now + 1)  # another client, every 10 min
    assert 540 <= slow["interval"] <= 660


def test_requests_closer_than_the_spacing_add_no_sample() -> None:
    feed = TopFeed()
    for i in range(50):
        feed.answer(snap({"a": stats(i)}), 1.0, now=10.0 + i * MIN_SPACING / 10)
    assert len(feed.samples) <= 6


def test_a_job_in_hand_is_timed_from_the_first_look_that_saw_it() -> None:
    feed = TopFeed()

    def job_time(jobs: int, now: float) -> Any:
        answer = feed.answer(snap({"a": stats(0)}, (proc(7, "busy", jobs),)), 1.0, now)
        assert answer["functions"]["a"]["busy"] == 1
        return answer["processes"][0]["job_time"]

    assert job_time(3, 10.0) == 0.0
    assert job_time(3, 12.5) == pytest.approx(2.5)  # the same job: busy with 3 done
    assert job_time(4, 13.5) == 0.0  # a job finished, another is in hand
    feed.answer(snap({"a": stats(0)}, (proc(7, "idle", 5),)), 1.0, 14.0)
    assert feed.busy_since == {}


def test_the_frame_fits_80x24_and_shows_every_function_and_process() -> None:
    feed = TopFeed()
    functions = {name: stats(1) for name in ("reverse", "sleepy", "boom")}
    procs = tuple(
        proc(100 + i, "busy" if i % 2 else "idle", i, (n,))
        for i, n in enumerate(["reverse", "sleepy", "boom", "sleepy"])
    )
    backoff = EmptySlot("boom#1", ("boom",), "backoff", "crash", 4, 3.2)
    answer = feed.answer(snap(functions, procs, (backoff,)), 1.0, 5.0)
    lines = tf.render(answer, 80, 24, tf.View(selected="boom"))
    assert len(lines) == 24 and all(len(text) == 80 for text, _ in lines)
    text = "\n".join(t for t, _ in lines)
    for name in functions:
        assert name in text
    for p in procs:
        assert str(p.pid) in text
    assert "crash x4" in text and "in 4s" in text
    selected = [t for t, style in lines if style == tf.SELECTED]
    assert len(selected) == 1 and selected[0].startswith("> boom")
    assert lines[-1][0].startswith("up/down select")


def test_many_functions_scroll_to_keep_the_selection_in_view() -> None:
    functions = {f"f{i:02d}": stats(i) for i in range(40)}
    answer = TopFeed().answer(snap(functions), 1.0, 5.0)
    lines = tf.render(answer, 80, 24, tf.View(selected="f33"))
    assert any(t.startswith("> f33") for t, _ in lines)
    assert len(lines) == 24


def test_many_processes_end_with_how_many_more() -> None:
    procs = tuple(proc(1000 + i) for i in range(32))
    answer = TopFeed().answer(snap({"a": stats(0)}, procs), 1.0, 5.0)
    lines = [t for t, _ in tf.render(answer, 80, 24, tf.View(selected="a"))]
    more = [t for t in lines if "more" in t]
    shown = sum(1 for t in lines if t.strip()[:4].isdigit())
    assert more and f"{32 - shown} more" in more[0]


def test_wider_terminals_show_more_columns_and_tiny_ones_do_not_break() -> None:
    answer = TopFeed().answer(snap({"a": stats(3)}, (proc(5),)), 1.0, 5.0)
    wide = tf.render(answer, 140, 40, tf.View(selected="a"))
    assert len(wide) == 40 and all(len(t) == 140 for t, _ in wide)
    assert "FAILED" in wide[2][0] and "SLOT" in "\n".join(t for t, _ in wide)
    for width, height in ((20, 3), (1, 1), (79, 5)):
        lines = tf.render(answer, width, height, tf.View())
        assert lines and len({len(t) for t, _ in lines}) == 1


def test_help_fits_in_80_columns() -> None:
    assert all(len(line) < 80 for line in tf.HELP)
    answer = TopFeed().answer(snap({"a": stats(3)}), 1.0, 5.0)
    text = "\n".join(t for t, _ in tf.render(answer, 80, 24, tf.View(help=True)))
    assert "pause the selected function" in text


def test_plain_frame_is_80_columns_with_everything() -> None:
    procs = tuple(proc(1000 + i) for i in range(40))
    answer = TopFeed().answer(snap({"a": stats(0)}, procs), 1.0, 5.0)
    text = tf.plain(answer)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert all(str(p.pid) in text for p in procs)


def test_sorts_order_functions_by_what_they_say() -> None:
    answer: dict[str, Any] = {
        "functions": {
            "a": {"queued": 0, "running": 0, "busy": 0, "jobs_per_s": 5.0},
            "b": {"queued": 9, "running": 1, "busy": 1, "jobs_per_s": 1.0},
        },
        "processes": [{"functions": ["a"], "rss": 10}, {"functions": ["b"], "rss": 99}],
    }
    assert tf.order(answer, "name") == ["a", "b"]
    assert tf.order(answer, "load") == ["b", "a"]
    assert tf.order(answer, "rate") == ["a", "b"]
    assert tf.order(answer, "memory") == ["b", "a"]


@pytest.mark.parametrize(
    "low, high, step, expected",
    [
        (1, 8, 1, (2, 8)),
        (1, 8, -1, (0, 8)),
        (0, 8, -1, (0, 8)),
        (2, 2, 1, (3, 3)),
        (2, 2, -1, (1, 1)),
        (3, 3, 1, (4, 4)),
        (8, 8, -1, (7, 7)),
        (0, 0, -1, (0, 0)),
    ],
)
def test_plus_and_minus_move_the_floor(low: int, high: int, step: int, expected: tuple) -> None:
    assert scaled(low, high, step) == expected


def test_the_snapshot_shows_each_slot_s_last_exit_and_the_slots_in_backoff() -> None:
    from gearmgr import scoreboard as sb
    from gearmgr.config import config_from_dict
    from gearmgr.supervisor.lifecycle import ExitReason, Slot
    from gearmgr.supervisor.plan import make_plan
    from gearmgr.supervisor.snapshot import take_snapshot

    board = sb.Scoreboard(4)
    crashing, recycled = (
        Slot(spec, i) for i, spec in enumerate(make_plan(config_from_dict({}), ["a", "b"]))
    )
    for now in (0.0, 0.1, 0.2):  # three quick deaths in a row: backing off
        crashing.spawned(100, now)
        crashing.exited(now, exit_ok=False, reported=ExitReason.CRASH, busy=True, jobs=(0, 0))
    recycled.spawned(200, 0.0)
    recycled.exited(50.0, exit_ok=True, reported=ExitReason.MAX_JOBS, busy=False, jobs=(9, 0))
    recycled.spawned(201, 50.0)
    snap = take_snapshot(
        pid=1, started_at=0.0, config_path=None, servers=(), servers_up={},
        planned=[crashing, recycled], live=[recycled], loaded={}, totals={},
        scoreboard=board, served=("a", "b"), broken=(), restarts={}, stopping=False,
    )  # fmt: skip
    assert [(p.pid, p.last_exit) for p in snap.processes] == [(201, "max_jobs")]
    (waiting,) = snap.empty_slots
    assert (waiting.key, waiting.state, waiting.last_exit, waiting.failures) == (
        "a#0",
        "backoff",
        "crash",
        3,
    )
    answer = TopFeed().answer(snap, 1.0)
    assert answer["waiting"][0]["state"] == "backoff"
    stopping = TopFeed().answer(replace(snap, stopping=True), 1.0)
    assert stopping["waiting"] == []  # a stopping supervisor starts nothing again
