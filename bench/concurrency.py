"""Benchmark: concurrent (asyncio) workers and AsyncClient.

Every measurement runs on one private gearmand (``--threads=1``), competitors alternating round
by round (rotated order); medians of the rounds are reported with the lowest round.

1. I/O-bound jobs (``await asyncio.sleep(0.1)``): one async process at concurrency 1, 8, 64 and
   256 drains a pre-filled queue (the process SIGSTOPped while it fills, then SIGCONT); jobs/s
   and the ratio to concurrency 1 (the ceiling is the concurrency).
2. No-op jobs: one async process with 64 free places (its GRABs and replies pipelined) against
   one C libgearman worker (bench/cworker.c, one job at a time); jobs/s, and the CPU time per
   job of the worker and of gearmand.
3. Memory: RSS and USS of one async process holding 256 sleeping jobs, against the same process
   idle.
4. AsyncClient: foreground submits/s with 1,000 in flight, against Client submitting one at a
   time, both served by one async no-op process with 256 places.

    python bench/concurrency.py [--quick] [--rounds R] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import common as cm

from gearmgr.wire.aclient import AsyncClient
from gearmgr.wire.client import Client

SLEEP = 0.1


class AsyncPool(cm.Pool):
    """One gearmgr async worker process (bench/gm_async_worker.py), paused like the others."""

    def __init__(self, gearmand: cm.Gearmand, function: str, places: int, sleep: float = 0.0):
        super().__init__("gearmgr", 1, gearmand, function)
        self.places, self.sleep = places, sleep

    def start(self) -> AsyncPool:
        _, env = cm.worker_command("gearmgr", self.gearmand.address, self.function)
        cmd = [cm.PY, str(cm.BENCH / "gm_async_worker.py"), self.gearmand.address, self.function]
        cmd += [str(self.places)] + (["--sleep", str(self.sleep)] if self.sleep else [])
        self.procs.append(
            subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        )
        self.gearmand.wait_workers(self.function, 1)
        return self


def drain(gd: cm.Gearmand, pool: cm.Pool, jobs: int) -> dict[str, float]:
    """Queue ``jobs`` while the pool is stopped, resume it, time the drain; CPU per job."""
    pool.pause()
    gd.prefill(pool.function, jobs)
    cpu_w, cpu_g = pool.cpu(), cm.threads_cpu(gd.pid)
    start = time.perf_counter()
    pool.resume()
    end = gd.wait_empty(pool.function)
    return {
        "jobs_per_s": jobs / (end - start),
        "worker_us_per_job": (pool.cpu() - cpu_w) / jobs * 1e6,
        "gearmand_us_per_job": (cm.threads_cpu(gd.pid) - cpu_g) / jobs * 1e6,
    }


def rounds(
    gd: cm.Gearmand, pools: dict[str, cm.Pool], jobs: dict[str, int], n: int
) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {name: [] for name in pools}
    names = list(pools)
    for r in range(n):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(drain(gd, pools[name], jobs[name]))
    return out


def summary(runs: list[dict[str, float]], key: str) -> tuple[float, float]:
    values = [run[key] for run in runs]
    return statistics.median(values), min(values)


def io_bound(gd: cm.Gearmand, args: argparse.Namespace) -> dict:
    levels = [1, 8, 64, 256]
    pools: dict[str, cm.Pool] = {
        f"c{c}": AsyncPool(gd, f"nap{c}", c, SLEEP).start() for c in levels
    }
    per = 2 if args.quick else 4  # seconds of work per trial at full concurrency
    jobs = {f"c{c}": max(10, int(c * per / SLEEP)) if c > 1 else int(per / SLEEP) for c in levels}
    try:
        runs = rounds(gd, pools, jobs, args.rounds)
    finally:
        for pool in pools.values():
            pool.stop()
    base = statistics.median(r["jobs_per_s"] for r in runs["c1"])
    rows, result = [], {}
    for c in levels:
        med, low = summary(runs[f"c{c}"], "jobs_per_s")
        ratios = [
            a["jobs_per_s"] / b["jobs_per_s"]
            for a, b in zip(runs[f"c{c}"], runs["c1"], strict=True)
        ]
        result[c] = {"jobs": jobs[f"c{c}"], "median": med, "lowest": low, "x": ratios}
        rows.append(
            [
                str(c),
                str(jobs[f"c{c}"]),
                cm.fmt(med),
                cm.fmt(low),
                f"{statistics.median(ratios):.1f}x (lowest {min(ratios):.1f}x)",
            ]
        )
    print("\n1. 100 ms I/O-bound jobs, one async process (jobs/s)")
    print(cm.table(["concurrency", "jobs", "median", "lowest", "vs concurrency 1"], rows))
    del base
    return result


def noop(gd: cm.Gearmand, args: argparse.Namespace) -> dict:
    pools: dict[str, cm.Pool] = {
        "async64": AsyncPool(gd, "noop_async", 64).start(),
        "c": cm.Pool("c", 1, gd, "noop_c").start(),
    }
    n = 10000 if args.quick else 40000
    try:
        runs = rounds(gd, pools, {k: n for k in pools}, args.rounds)
    finally:
        for pool in pools.values():
            pool.stop()
    ratios = [
        a["jobs_per_s"] / b["jobs_per_s"] for a, b in zip(runs["async64"], runs["c"], strict=True)
    ]
    rows, result = [], {"ratio": ratios}
    for name, label in (("async64", "gearmgr async, 64 places"), ("c", "C libgearman worker")):
        med, low = summary(runs[name], "jobs_per_s")
        wk = statistics.median(r["worker_us_per_job"] for r in runs[name])
        gm = statistics.median(r["gearmand_us_per_job"] for r in runs[name])
        result[name] = {"median": med, "lowest": low, "worker_us": wk, "gearmand_us": gm}
        rows.append([label, cm.fmt(med), cm.fmt(low), f"{wk:.1f}", f"{gm:.1f}"])
    print(f"\n2. no-op jobs, one process, {n} per trial")
    print(cm.table(["worker", "jobs/s", "lowest", "worker µs/job", "gearmand µs/job"], rows))
    print(f"async / C: {statistics.median(ratios):.2f}x (lowest round {min(ratios):.2f}x)")
    return result


def memory(gd: cm.Gearmand) -> dict:
    pool = AsyncPool(gd, "hold", 256, 5.0).start()
    try:
        pid = pool.pids[0]
        cm.wait_for(lambda: cm.rss(pid) > 0, 5)
        time.sleep(0.5)
        idle = (cm.rss(pid), cm.uss(pid))
        gd.prefill("hold", 256)
        cm.wait_for(lambda: gd.status().get("hold", (0, 0, 0))[1] == 256, 20, what="256 in hand")
        held = (cm.rss(pid), cm.uss(pid))
    finally:
        pool.stop()
    print("\n3. memory of one async process (MiB)")
    print(
        cm.table(
            ["", "RSS", "USS"],
            [
                ["idle", f"{idle[0] / 2**20:.1f}", f"{idle[1] / 2**20:.1f}"],
                ["256 jobs in hand", f"{held[0] / 2**20:.1f}", f"{held[1] / 2**20:.1f}"],
            ],
        )
    )
    per_job = (held[1] - idle[1]) / 256
    print(f"per job in hand: {per_job / 1024:.1f} KiB of USS")
    return {"idle": idle, "held": held, "per_job_bytes": per_job}


def clients(gd: cm.Gearmand, args: argparse.Namespace) -> dict:
    pool = AsyncPool(gd, "echo_async", 256).start()
    n_async = 5000 if args.quick else 20000
    n_sync = 1000 if args.quick else 4000
    found: dict[str, list[float]] = {"AsyncClient": [], "Client": []}

    async def many() -> float:
        gate = asyncio.Semaphore(1000)
        async with AsyncClient([gd.address], timeout=60) as client:

            async def one(i: int) -> None:
                async with gate:
                    await client.submit("echo_async", b"x")

            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n_async)))
            return n_async / (time.perf_counter() - start)

    def one_at_a_time() -> float:
        with Client([gd.address], timeout=60) as client:
            start = time.perf_counter()
            for _ in range(n_sync):
                client.submit("echo_async", b"x")
            return n_sync / (time.perf_counter() - start)

    try:
        for r in range(args.rounds):
            order = [("AsyncClient", lambda: asyncio.run(many())), ("Client", one_at_a_time)]
            for name, run in order[r % 2 :] + order[: r % 2]:
                found[name].append(run())
    finally:
        pool.stop()
    ratios = [a / b for a, b in zip(found["AsyncClient"], found["Client"], strict=True)]
    print("\n4. foreground submits/s (one async no-op worker process, 256 places)")
    print(
        cm.table(
            ["client", "median", "lowest"],
            [
                [
                    "AsyncClient, 1,000 in flight",
                    cm.fmt(statistics.median(found["AsyncClient"])),
                    cm.fmt(min(found["AsyncClient"])),
                ],
                [
                    "Client, one at a time",
                    cm.fmt(statistics.median(found["Client"])),
                    cm.fmt(min(found["Client"])),
                ],
            ],
        )
    )
    print(f"AsyncClient / Client: {statistics.median(ratios):.1f}x (lowest {min(ratios):.1f}x)")
    return {**found, "ratio": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    result: dict = {"machine": cm.machine()}
    with cm.Gearmand(threads=1) as gd:
        result["io_bound"] = io_bound(gd, args)
        result["noop"] = noop(gd, args)
        result["memory"] = memory(gd)
        result["clients"] = clients(gd, args)
    cm.save_unless_told_not("concurrency", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
