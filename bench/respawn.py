"""Benchmark 3: respawn latency after kill -9.

``gearmgr run`` with 32 no-op worker processes (as in the GearmanManager reference measurement).
Once they have all registered and run for 11 s (so a death counts as a crash after a stable run,
restarted at once, not a crash loop with back-off), each trial SIGKILLs a different worker and
times until gearmand lists a new worker connection for the function (admin ``workers``, polled
every 1 ms). The kill is the start; the replacement's CAN_DO reaching gearmand is the end.

    python bench/respawn.py [--quick] [--kills N] [--processes N] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import common as cm

FUNCTION = "noop_respawn"


def client_ids(g: cm.Gearmand) -> set[str]:
    out = set()
    for line in g.admin("workers"):
        parts = line.split(" ", 2)
        if (len(parts) == 3 and line.rstrip().endswith(f" {FUNCTION}")) or f" {FUNCTION} " in line:
            out.add(parts[2].split(" : ")[0])
    return out


def run(kills: int, processes: int, verbose: bool = True) -> dict:
    times = []
    with cm.Gearmand() as g:
        sup = cm.Supervised(
            {"servers": [g.address], "dedicated_count": processes}, functions=[FUNCTION]
        )
        try:
            sup.start()
            g.wait_workers(FUNCTION, processes, timeout=60)
            time.sleep(11)  # past slot.STABLE_AFTER: a kill is a crash after a stable run
            victims = cm.wait_for(
                lambda: len(sup.worker_pids()) >= processes and sup.worker_pids(), 10
            )
            for i in range(kills):
                pid = victims[i % len(victims)]
                before = client_ids(g)
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                while True:
                    now_ids = client_ids(g)
                    if now_ids - before:
                        t1 = time.perf_counter()
                        break
                    if time.perf_counter() - t0 > 30:
                        raise TimeoutError("no replacement registered within 30 s")
                    time.sleep(0.001)
                times.append((t1 - t0) * 1000)
                if verbose:
                    print(
                        f"  kill {i + 1}/{kills}: replacement registered after {times[-1]:.1f} ms",
                        file=sys.stderr,
                    )
                g.wait_workers(FUNCTION, processes)
                time.sleep(0.05)
            sup.check_alive()
        finally:
            sup.stop()
    return {"ms": times, "stats_ms": cm.stats(times), "p90_ms": cm.percentile(sorted(times), 90)}


def report(result: dict) -> str:
    s = result["stats_ms"]
    return cm.table(
        ["respawn after kill -9", "kills", "min ms", "median ms", "p90 ms", "max ms"],
        [
            [
                "kill -> replacement registered",
                s["n"],
                cm.fmt(s["min"], 1),
                cm.fmt(s["median"], 1),
                cm.fmt(result["p90_ms"], 1),
                cm.fmt(s["max"], 1),
            ]
        ],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--kills", type=int)
    ap.add_argument("--processes", type=int, default=32)
    ap.add_argument("--json")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    kills = args.kills or (10 if args.quick else 32)
    print(f"respawn: {kills} kills among {args.processes} worker processes", file=sys.stderr)
    result = run(kills, args.processes)
    result["params"] = {"kills": kills, "processes": args.processes}
    print(report(result))
    cm.save_unless_told_not("respawn", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
