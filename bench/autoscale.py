"""Benchmark: elastic pools (issue 12).

1. Backlog -> pool at ``max_processes``: a pool of 1..8 (no-op-ish jobs of 1 s, so the backlog
   stays) gets 200 background jobs at once; the time until gearmand lists 8 workers for the
   function. Median of ``--trials`` trials (a fresh supervisor each).
2. 600 jobs of 100 ms: the time to drain them with an elastic pool 1..8 against fixed pools of
   1 and 8 processes, in the same run: the elastic pool and the fixed 8 in ``--rounds``
   interleaved rounds (medians and the worst round of the ratio), the fixed 1 once.
3. The idle supervisor's CPU (schedstat, all threads) with an elastic pool of 32..64 workers,
   over ``--idle`` seconds, as % of one core: the backlog reading once a second included.

    python bench/autoscale.py [--quick] [--trials N] [--jobs N] [--rounds N] [--idle S]
                              [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import common as cm

FUNCTION = "sleep_job"
WORKER = """import time


def sleep_job(job):
    time.sleep(float(job.text or "0.1"))
"""


def supervised(g: cm.Gearmand, floor: int, ceiling: int) -> cm.Supervised:
    settings = {"dedicated_count": floor, "max_processes": ceiling, "scale_down_delay": "5s"}
    sup = cm.Supervised({"servers": [g.address], "functions": {FUNCTION: settings}})
    (sup.workers / f"{FUNCTION}.py").write_text(WORKER)
    return sup


def time_to_ceiling(ceiling: int) -> float:
    with cm.Gearmand() as g:
        sup = supervised(g, 1, ceiling)
        try:
            sup.start()
            g.wait_workers(FUNCTION, 1, timeout=30)
            t0 = time.perf_counter()
            g.prefill(FUNCTION, 200, b"1")
            cm.wait_for(lambda: g.workers_of(FUNCTION) >= ceiling, 30, 0.005, "the ceiling")
            took = time.perf_counter() - t0
            sup.check_alive()
        finally:
            sup.stop()
    return took


def drain(jobs: int, floor: int, ceiling: int) -> float:
    with cm.Gearmand() as g:
        sup = supervised(g, floor, ceiling)
        try:
            sup.start()
            g.wait_workers(FUNCTION, floor, timeout=30)
            time.sleep(1.5)  # the supervisor's first backlog readings are in
            t0 = time.perf_counter()
            g.prefill(FUNCTION, jobs, b"0.1")
            took = g.wait_empty(FUNCTION, timeout=600, interval=0.01) - t0
            sup.check_alive()
        finally:
            sup.stop()
    return took


def idle_cpu(seconds: float) -> float:
    with cm.Gearmand() as g:
        sup = supervised(g, 32, 64)
        try:
            sup.start()
            g.wait_workers(FUNCTION, 32, timeout=120)
            time.sleep(2.0)
            c0, t0 = cm.threads_cpu(sup.pid), time.perf_counter()
            time.sleep(seconds)
            c1, t1 = cm.threads_cpu(sup.pid), time.perf_counter()
            sup.check_alive()
        finally:
            sup.stop()
    return (c1 - c0) / (t1 - t0) * 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 trial, 120 jobs")
    parser.add_argument("--trials", type=int, default=5, help="trials of the growth (5)")
    parser.add_argument("--jobs", type=int, default=600, help="jobs of 100 ms to drain (600)")
    parser.add_argument("--rounds", type=int, default=3, help="drain rounds (3)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU (30)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()
    trials, jobs = (1, 120) if args.quick else (args.trials, args.jobs)
    growth = []
    for i in range(trials):
        growth.append(time_to_ceiling(8))
        print(f"  trial {i + 1}: 1 -> 8 processes in {growth[-1]:.2f} s", file=sys.stderr)
    rounds = 1 if args.quick else args.rounds
    runs: dict[str, list[float]] = {"elastic 1..8": [], "fixed 8": []}
    for i in range(rounds):
        for label, floor, ceiling in (("elastic 1..8", 1, 8), ("fixed 8", 8, 0)):
            runs[label].append(drain(jobs, floor, ceiling))
            print(
                f"  round {i + 1}, {label}: {jobs} jobs in {runs[label][-1]:.2f} s", file=sys.stderr
            )
    runs["fixed 1"] = [drain(jobs, 1, 0)]
    print(f"  fixed 1: {jobs} jobs of 100 ms in {runs['fixed 1'][0]:.2f} s", file=sys.stderr)
    drains = {label: statistics.median(v) for label, v in runs.items()}
    ratios = [e / f for e, f in zip(runs["elastic 1..8"], runs["fixed 8"], strict=True)]
    idle = idle_cpu(5.0 if args.quick else args.idle)
    print(f"  idle supervisor, 32 elastic workers: {idle:.3f} % of a core", file=sys.stderr)
    result = {
        "idle_cpu_percent": idle,
        "growth_s": growth,
        "growth_median_s": statistics.median(growth),
        "drain_s": drains,
        "drain_rounds_s": runs,
        "elastic_over_fixed8": ratios,
        "jobs": jobs,
    }
    print(
        cm.table(
            ["measure", "value"],
            [
                [
                    f"backlog -> 8 processes, median of {trials}",
                    f"{result['growth_median_s']:.2f} s",
                ],
                *[[f"drain {jobs} x 100 ms, {k}", f"{v:.2f} s"] for k, v in drains.items()],
                [
                    f"elastic / fixed 8, median (worst) of {rounds}",
                    f"{statistics.median(ratios):.3f} ({max(ratios):.3f})",
                ],
                ["idle supervisor CPU, 32 elastic workers", f"{idle:.3f} % of a core"],
            ],
        )
    )
    if args.json:
        import json
        from pathlib import Path

        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
