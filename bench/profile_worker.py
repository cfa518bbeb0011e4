"""Where a gearmgr worker spends its time while draining a queue.

    python bench/profile_worker.py [--jobs N] [--pythonpath DIR] [--py-spy]

Queues N no-op background jobs on a private gearmand, then lets one bench/gm_worker.py process
drain them under cProfile (deterministic, with its overhead) and prints the top functions by
own time and by cumulative time. With ``--py-spy`` it also samples an unprofiled worker with
py-spy (``--native`` included: time in C calls such as send/recv shows up) and prints the top
lines; the flame graph SVG is written next to the results. ``--pythonpath`` profiles a copy of
the package (e.g. a patched one).
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import common as cm


def drain(
    g: cm.Gearmand, cmd: list[str], env: dict, fn: str, jobs: int, wrap: list[str] | None = None
) -> float:
    proc = subprocess.Popen(cmd, env=env)
    try:
        g.wait_workers(fn, 1)
        os.kill(proc.pid, signal.SIGSTOP)
        g.prefill(fn, jobs)
        spy = None
        if wrap:
            spy = subprocess.Popen(
                [*wrap, "--pid", str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            time.sleep(0.5)
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGCONT)
        t1 = g.wait_empty(fn)
        if spy:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        return jobs / (t1 - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=50000)
    ap.add_argument("--pythonpath", default="")
    ap.add_argument("--py-spy", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    out = cm.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (args.pythonpath, str(cm.ROOT)) if p)
    fn = "noop_prof"
    prof_file = cm.build_dir() / "worker.prof"
    with cm.Gearmand() as g:
        rate = drain(
            g,
            [cm.PY, str(cm.BENCH / "gm_worker.py"), g.address, fn, "--profile", str(prof_file)],
            env,
            fn,
            args.jobs,
        )
        time.sleep(0.2)
        buf = io.StringIO()
        st = pstats.Stats(str(prof_file), stream=buf)
        st.sort_stats("tottime").print_stats(args.top)
        st.sort_stats("cumulative").print_stats(args.top)
        print(f"cProfile: {args.jobs} jobs drained at {rate:,.0f} jobs/s (under the profiler)")
        print(buf.getvalue())
        if args.py_spy:
            spy = shutil.which("py-spy") or os.path.join(os.path.dirname(cm.PY), "py-spy")
            raw = out / "worker-py-spy.txt"
            svg = out / "worker-py-spy.svg"
            rate = drain(
                g,
                [cm.PY, str(cm.BENCH / "gm_worker.py"), g.address, fn],
                env,
                fn,
                args.jobs,
                [spy, "record", "--native", "-r", "1000", "-f", "raw", "-o", str(raw)],
            )
            print(f"py-spy: {args.jobs} jobs drained at {rate:,.0f} jobs/s (sampled at 1 kHz)")
            summarize_raw(raw, args.top)
            rate = drain(
                g,
                [cm.PY, str(cm.BENCH / "gm_worker.py"), g.address, fn],
                env,
                fn,
                args.jobs,
                [spy, "record", "--native", "-r", "1000", "-f", "flamegraph", "-o", str(svg)],
            )
            print(f"flame graph: {svg}")
    return 0


def summarize_raw(path, top: int) -> None:
    """Self time by leaf frame and inclusive time by frame, from py-spy's collapsed stacks."""
    from collections import Counter

    leaf: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    print(f"py-spy samples: {total}")
    print("self (leaf) time:")
    for f, n in leaf.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("inclusive time:")
    for f, n in incl.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    sys.exit(main())
