"""Benchmark 5: what the supervisor costs.

For each pool size (32 and 200 no-op worker processes of one function under ``gearmgr run``):

* start: time from launching ``gearmgr run`` until gearmand lists every worker (admin ``status``,
  polled every 5 ms): interpreter start, config, worker file validation, forks, imports, CAN_DO;
* idle CPU: the supervisor's CPU time (schedstat, all threads) over ``--idle`` seconds once every
  worker is registered and 2 s have passed, as % of one core; the workers' CPU alongside;
* memory: USS (private pages, smaps_rollup) of every worker, PSS and RSS, and the supervisor's;
  beside a standalone worker process (bench/gm_worker.py: a fresh interpreter that imports the
  same code), whose USS is what each worker would cost without forking from a parent;
* stop: time from SIGTERM to the supervisor's exit with every worker idle.

    python bench/supervisor_cost.py [--quick] [--sizes 32,200] [--idle SECONDS] [--json FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import common as cm

FUNCTION = "noop_cost"


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def standalone_memory(g: cm.Gearmand) -> dict:
    cmd, env = cm.worker_command("gearmgr", g.address, "noop_alone")
    procs = [subprocess.Popen(cmd, env=env) for _ in range(2)]
    try:
        g.wait_workers("noop_alone", 2)
        time.sleep(0.5)
        return {
            "uss": cm.stats(cm.uss(p.pid) for p in procs),
            "rss": cm.stats(cm.rss(p.pid) for p in procs),
            "pss": cm.stats(pss(p.pid) for p in procs),
        }
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def run_size(n: int, idle: float, g: cm.Gearmand, verbose: bool = True) -> dict:
    sup = cm.Supervised(
        {"servers": [g.address], "dedicated_count": n, "graceful_timeout": "30s"},
        functions=[FUNCTION],
    )
    try:
        t0 = time.perf_counter()
        sup.start()
        while g.workers_of(FUNCTION) < n:
            sup.check_alive()
            if time.perf_counter() - t0 > 120:
                raise TimeoutError(f"{n} workers not registered within 120 s")
            time.sleep(0.005)
        start_s = time.perf_counter() - t0
        if verbose:
            print(f"  {n} workers: all registered {start_s:.2f} s after launch", file=sys.stderr)
        time.sleep(2.0)
        workers = sup.children()
        mem = {
            "worker_uss": cm.stats(cm.uss(p) for p in workers),
            "worker_pss": cm.stats(pss(p) for p in workers),
            "worker_rss": cm.stats(cm.rss(p) for p in workers),
            "supervisor_uss": cm.uss(sup.pid),
            "supervisor_rss": cm.rss(sup.pid),
        }
        c0, w0, t = (
            cm.threads_cpu(sup.pid),
            sum(cm.threads_cpu(p) for p in workers),
            time.perf_counter(),
        )
        time.sleep(idle)
        c1, w1, t1 = (
            cm.threads_cpu(sup.pid),
            sum(cm.threads_cpu(p) for p in workers),
            time.perf_counter(),
        )
        idle_pct = (c1 - c0) / (t1 - t) * 100
        workers_pct = (w1 - w0) / (t1 - t) * 100
        if verbose:
            print(
                f"  {n} workers: idle supervisor {idle_pct:.3f} % of a core,"
                f" workers together {workers_pct:.3f} %;"
                f" worker USS median {mem['worker_uss']['median'] / 2**20:.2f} MiB",
                file=sys.stderr,
            )
        sup.check_alive()
    except BaseException:
        sup.stop(timeout=10)
        raise
    stop_s = sup.stop(timeout=60)
    if verbose:
        print(f"  {n} workers: SIGTERM -> exit {stop_s:.3f} s", file=sys.stderr)
    return {
        "processes": n,
        "start_s": start_s,
        "idle_cpu_pct": idle_pct,
        "workers_idle_cpu_pct": workers_pct,
        "stop_s": stop_s,
        "idle_window_s": idle,
        **mem,
    }


def run(sizes: list[int], idle: float, repeats: int) -> dict:
    out = {"sizes": [], "standalone": None}
    with cm.Gearmand() as g:
        out["standalone"] = standalone_memory(g)
        for r in range(repeats):
            for n in sizes:
                res = run_size(n, idle, g)
                res["round"] = r
                out["sizes"].append(res)
                cm.wait_for(lambda: g.workers_of(FUNCTION) == 0, 30, 0.01, "workers gone")
    out["summary"] = {}
    for n in sizes:
        rs = [x for x in out["sizes"] if x["processes"] == n]
        out["summary"][str(n)] = {
            k: cm.stats(x[k] for x in rs)
            for k in ("start_s", "idle_cpu_pct", "workers_idle_cpu_pct", "stop_s")
        } | {
            "worker_uss_median": cm.stats(x["worker_uss"]["median"] for x in rs),
            "worker_pss_median": cm.stats(x["worker_pss"]["median"] for x in rs),
            "worker_rss_median": cm.stats(x["worker_rss"]["median"] for x in rs),
            "supervisor_rss": cm.stats(x["supervisor_rss"] for x in rs),
        }
    return out


def report(result: dict) -> str:
    mib = 2**20
    rows = []
    for n, s in result["summary"].items():
        rows += [
            [
                n,
                "start: launch -> all registered (s)",
                cm.fmt(s["start_s"]["min"], 2),
                cm.fmt(s["start_s"]["median"], 2),
                cm.fmt(s["start_s"]["max"], 2),
            ],
            [
                n,
                "idle supervisor CPU (% of a core)",
                cm.fmt(s["idle_cpu_pct"]["min"], 3),
                cm.fmt(s["idle_cpu_pct"]["median"], 3),
                cm.fmt(s["idle_cpu_pct"]["max"], 3),
            ],
            [
                n,
                "idle workers, all together (% of a core)",
                cm.fmt(s["workers_idle_cpu_pct"]["min"], 3),
                cm.fmt(s["workers_idle_cpu_pct"]["median"], 3),
                cm.fmt(s["workers_idle_cpu_pct"]["max"], 3),
            ],
            [
                n,
                "stop: SIGTERM -> exit, workers idle (s)",
                cm.fmt(s["stop_s"]["min"], 3),
                cm.fmt(s["stop_s"]["median"], 3),
                cm.fmt(s["stop_s"]["max"], 3),
            ],
            [
                n,
                "USS per forked worker (MiB, median)",
                cm.fmt(s["worker_uss_median"]["min"] / mib, 2),
                cm.fmt(s["worker_uss_median"]["median"] / mib, 2),
                cm.fmt(s["worker_uss_median"]["max"] / mib, 2),
            ],
            [
                n,
                "PSS per forked worker (MiB, median)",
                cm.fmt(s["worker_pss_median"]["min"] / mib, 2),
                cm.fmt(s["worker_pss_median"]["median"] / mib, 2),
                cm.fmt(s["worker_pss_median"]["max"] / mib, 2),
            ],
            [
                n,
                "RSS per forked worker (MiB, median)",
                cm.fmt(s["worker_rss_median"]["min"] / mib, 2),
                cm.fmt(s["worker_rss_median"]["median"] / mib, 2),
                cm.fmt(s["worker_rss_median"]["max"] / mib, 2),
            ],
            [
                n,
                "supervisor RSS (MiB)",
                cm.fmt(s["supervisor_rss"]["min"] / mib, 2),
                cm.fmt(s["supervisor_rss"]["median"] / mib, 2),
                cm.fmt(s["supervisor_rss"]["max"] / mib, 2),
            ],
        ]
    st = result["standalone"]
    rows.append(
        [
            "1",
            "standalone worker (fresh interpreter): USS / PSS / RSS (MiB)",
            "",
            " / ".join(f"{st[k]['median'] / mib:.2f}" for k in ("uss", "pss", "rss")),
            "",
        ]
    )
    return cm.table(["workers", "measure", "min", "median", "max"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="32,200")
    ap.add_argument("--idle", type=float)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--json")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    idle = args.idle or (10.0 if args.quick else 30.0)
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = [int(x) for x in args.sizes.split(",")]
    print(
        f"supervisor cost: sizes {sizes}, idle window {idle:g} s, {repeats} repeats",
        file=sys.stderr,
    )
    result = run(sizes, idle, repeats)
    result["params"] = {"sizes": sizes, "idle_s": idle, "repeats": repeats}
    print(report(result))
    cm.save_unless_told_not("supervisor_cost", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
