"""Benchmark 1: throughput per worker process (drain of a pre-filled queue).

Every competitor gets its own function name on one gearmand and its own pool of
1, 2 or 4 processes, started once, registered, then SIGSTOPped. A trial queues N no-op background
jobs for one pool (pipelined SUBMIT_JOB_BG over a raw socket, workers stopped), sends SIGCONT and
times until gearmand's ``status`` shows 0 jobs for the function (polled every 2 ms), then stops
the pool again. Rounds alternate the competitors (rotated order), so slow phases of the shared
machine hit them all; ratios are taken within a round.

Competitors:
  gearmgr      bench/gm_worker.py: gearmgr.worker.Worker as a forked child runs it (worker file,
               scoreboard, process title)
  gearmgr-sup  the same code forked by the supervisor (`gearmgr run`,
               dedicated_count = pool size)
  c            bench/cworker.c, libgearman's gearman_worker_work() loop
  php          bench/php_worker.php, pecl GearmanWorker (what GearmanManager runs)
  gearmgr-bare the same worker without scoreboard slot and titles (the cost of reporting)
  gearmgr-pure the same worker without its C extension (GEARMGR_PURE_PYTHON=1)
  gearmgr@DIR  gearmgr.worker from DIR (a patched copy), for side-by-side comparisons

The whole run is made once per gearmand setting (``--gearmand-threads``, default ``1,default``:
``--threads=1`` as gearmgr's embedded_server runs it, then gearmand's default thread count).

    python bench/throughput.py [--quick] [--jobs N] [--rounds R] [--pools 1,2,4]
                               [--kinds gearmgr,gearmgr-sup,c,php] [--gearmand-threads 1,default]
                               [--json FILE]
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import common as cm


def function_name(kind: str, n: int) -> str:
    return f"noop_{re.sub(r'[^a-z0-9]', '_', kind.split('@')[0])}{len(kind)}_{n}"


class SupPool:
    """A pool forked by the supervisor (``gearmgr run``), paused like the others."""

    def __init__(self, n: int, gearmand: cm.Gearmand, function: str, pythonpath: str | None = None):
        self.n, self.gearmand, self.function = n, gearmand, function
        self.sup = cm.Supervised(
            {"servers": [gearmand.address], "dedicated_count": n, "graceful_timeout": "2s"},
            functions=[function],
            pythonpath=pythonpath,
        )
        self.pids: list[int] = []

    def start(self) -> SupPool:
        self.sup.start()
        self.gearmand.wait_workers(self.function, self.n, timeout=30)
        self.pids = cm.wait_for(
            lambda: len(self.sup.worker_pids()) >= self.n and self.sup.worker_pids(), 10
        )
        return self

    def pause(self) -> None:
        cm.signal_all(self.pids, cm.signal.SIGSTOP)

    def resume(self) -> None:
        cm.signal_all(self.pids, cm.signal.SIGCONT)

    def cpu(self) -> float:
        return sum(cm.threads_cpu(p) for p in self.pids)

    def stop(self) -> None:
        self.resume()
        self.sup.stop()


def make_pool(kind: str, n: int, gearmand: cm.Gearmand):
    fn = function_name(kind, n)
    if kind.startswith("gearmgr-sup"):
        _, _, alt = kind.partition("@")
        return SupPool(n, gearmand, fn, alt or None)
    return cm.Pool(kind, n, gearmand, fn)


def run(
    kinds: list[str],
    pools: list[int],
    jobs: int,
    rounds: int,
    verbose: bool = True,
    threads: int | None = 1,
) -> dict:
    trials: list[dict] = []
    with cm.Gearmand(threads=threads) as g:
        started = {}
        try:
            for n in pools:
                for kind in kinds:
                    p = make_pool(kind, n, g).start()
                    p.pause()
                    started[(kind, n)] = p
            time.sleep(0.2)
            for r in range(rounds):
                for n in pools:
                    order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
                    for kind in order:
                        pool = started[(kind, n)]
                        fn = pool.function
                        g.prefill(fn, jobs)
                        cm.wait_for(lambda f=fn: g.queued(f) >= jobs, 10, 0.002, f"{jobs} queued")
                        cpu0, gcpu0 = pool.cpu(), cm.threads_cpu(g.pid)
                        t0 = time.perf_counter()
                        pool.resume()
                        t1 = g.wait_empty(fn)
                        cpu1, gcpu1 = pool.cpu(), cm.threads_cpu(g.pid)
                        pool.pause()
                        secs = t1 - t0
                        trial = {
                            "round": r,
                            "kind": kind,
                            "processes": n,
                            "jobs": jobs,
                            "seconds": secs,
                            "jobs_per_s": jobs / secs,
                            "jobs_per_s_per_process": jobs / secs / n,
                            "worker_cpu_us_per_job": (cpu1 - cpu0) / jobs * 1e6,
                            "gearmand_cpu_us_per_job": (gcpu1 - gcpu0) / jobs * 1e6,
                        }
                        trials.append(trial)
                        if verbose:
                            print(
                                f"  round {r + 1}/{rounds} {kind:>12} x{n}:"
                                f" {trial['jobs_per_s']:>9,.0f} jobs/s"
                                f"  worker {trial['worker_cpu_us_per_job']:5.1f} us/job"
                                f"  gearmand {trial['gearmand_cpu_us_per_job']:5.1f} us/job",
                                file=sys.stderr,
                                flush=True,
                            )
        finally:
            for p in started.values():
                p.stop()
    return summarize(trials, kinds, pools)


def summarize(trials: list[dict], kinds: list[str], pools: list[int]) -> dict:
    rows = []
    ratios = []
    for n in pools:
        for kind in kinds:
            t = [x for x in trials if x["kind"] == kind and x["processes"] == n]
            rows.append(
                {
                    "kind": kind,
                    "processes": n,
                    "jobs_per_s": cm.stats(x["jobs_per_s"] for x in t),
                    "jobs_per_s_per_process": cm.stats(x["jobs_per_s_per_process"] for x in t),
                    "worker_cpu_us_per_job": cm.stats(x["worker_cpu_us_per_job"] for x in t),
                    "gearmand_cpu_us_per_job": cm.stats(x["gearmand_cpu_us_per_job"] for x in t),
                }
            )
        for num in kinds:
            for den in kinds:
                if num == den or den not in ("c", "php") or (num, den) == ("php", "c"):
                    continue
                per_round = []
                for r in sorted({x["round"] for x in trials}):
                    a = [
                        x
                        for x in trials
                        if x["round"] == r and x["processes"] == n and x["kind"] == num
                    ]
                    b = [
                        x
                        for x in trials
                        if x["round"] == r and x["processes"] == n and x["kind"] == den
                    ]
                    if a and b:
                        per_round.append(a[0]["jobs_per_s"] / b[0]["jobs_per_s"])
                ratios.append(
                    {"processes": n, "kind": num, "versus": den, "ratio": cm.stats(per_round)}
                )
    return {"trials": trials, "rows": rows, "ratios": ratios}


def report(result: dict) -> str:
    rows = [
        [
            r["kind"],
            r["processes"],
            cm.fmt(r["jobs_per_s"]["min"]),
            cm.fmt(r["jobs_per_s"]["median"]),
            cm.fmt(r["jobs_per_s"]["max"]),
            cm.fmt(r["jobs_per_s_per_process"]["median"]),
            cm.fmt(r["worker_cpu_us_per_job"]["median"], 1),
            cm.fmt(r["gearmand_cpu_us_per_job"]["median"], 1),
        ]
        for r in result["rows"]
    ]
    out = cm.table(
        [
            "worker",
            "processes",
            "jobs/s min",
            "median",
            "max",
            "per process (median)",
            "worker CPU µs/job",
            "gearmand CPU µs/job",
        ],
        rows,
    )
    rrows = [
        [
            f"{x['kind']} / {x['versus']}",
            x["processes"],
            cm.fmt(x["ratio"]["min"], 2),
            cm.fmt(x["ratio"]["median"], 2),
            cm.fmt(x["ratio"]["max"], 2),
        ]
        for x in result["ratios"]
    ]
    out += "\n\nRatios of jobs/s, taken within each round:\n\n"
    out += cm.table(["ratio", "processes", "min", "median", "max"], rrows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer jobs and rounds (a smoke run)")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--pools", default="1,2,4")
    ap.add_argument("--kinds", default="gearmgr,gearmgr-sup,c,php")
    ap.add_argument(
        "--gearmand-threads",
        default="1,default",
        help="gearmand settings to run, comma-separated: a thread count or 'default'",
    )
    ap.add_argument("--json", help="write results here (default bench/results/throughput.json)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    jobs = args.jobs or (10000 if args.quick else 30000)
    rounds = args.rounds or (3 if args.quick else 5)
    kinds = args.kinds.split(",")
    pools = [int(x) for x in args.pools.split(",")]
    print(
        f"throughput: {jobs} no-op background jobs per trial, {rounds} rounds, pools {pools}",
        file=sys.stderr,
    )
    settings = [None if t == "default" else int(t) for t in args.gearmand_threads.split(",")]
    runs = []
    for threads in settings:
        name = "default" if threads is None else str(threads)
        print(f"gearmand --threads={name}", file=sys.stderr)
        one = run(kinds, pools, jobs, rounds, threads=threads)
        one["gearmand_threads"] = name
        runs.append(one)
        print(f"\ngearmand threads: {name}\n")
        print(report(one))
    result: dict = {"runs": runs, **runs[0]}  # the first setting also at the top (older readers)
    result["params"] = {
        "jobs": jobs,
        "rounds": rounds,
        "kinds": kinds,
        "pools": pools,
        "gearmand_threads": [r["gearmand_threads"] for r in runs],
    }
    cm.save_unless_told_not("throughput", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
