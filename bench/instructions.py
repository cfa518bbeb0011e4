"""User-space instructions per job of each worker kind (callgrind), and its user/system CPU split.

    python bench/instructions.py [--kinds gearmgr,c] [--jobs 2000,12000] [--cpu-jobs 50000]
                                 [--no-callgrind]

Wall-clock figures move with the machine's load; the number of instructions a process executes
does not. Each kind drains two queues of no-op background jobs of different sizes under
``valgrind --tool=callgrind`` (a fresh process each time, from start to SIGTERM), and the
difference of the two totals over the difference of the job counts is the user-space cost of
one job, start-up and shutdown cancelled out (the kernel's side of recv/send is not counted:
see the CPU split). Without valgrind, the same worker drains ``--cpu-jobs`` jobs and the
split of its CPU time into user and system (``/proc/PID/stat``, clock ticks) is printed per job.

Kinds are those of bench/common.py's worker_command (``gearmgr``, ``gearmgr@DIR``, ``c``,
``php``); ``gearmgr@DIR`` measures a patched copy of the package.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import common as cm


def _ticks(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / cm.CLK_TCK, int(fields[12]) / cm.CLK_TCK


def drain(
    g: cm.Gearmand, kind: str, fn: str, jobs: int, wrap: list[str] | None = None
) -> tuple[float, float, float]:
    """Drain ``jobs`` jobs with one fresh worker; (seconds, user s, system s) of the drain."""
    cmd, env = cm.worker_command(kind, g.address, fn)
    proc = subprocess.Popen([*(wrap or []), *cmd], env=env, stdin=subprocess.DEVNULL)
    try:
        g.wait_workers(fn, 1, timeout=120)
        os.kill(proc.pid, signal.SIGSTOP)
        g.prefill(fn, jobs)
        u0, s0 = _ticks(proc.pid)
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGCONT)
        t1 = g.wait_empty(fn, timeout=1800, interval=0.01 if wrap else 0.002)
        u1, s1 = _ticks(proc.pid)
        return t1 - t0, u1 - u0, s1 - s0
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=120)


def total_instructions(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kinds", default="gearmgr,c")
    ap.add_argument("--jobs", default="2000,12000", help="the two queue sizes (callgrind)")
    ap.add_argument("--cpu-jobs", type=int, default=50000)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--keep", default=None, help="folder to keep the callgrind files in")
    args = ap.parse_args(argv)
    small, large = (int(x) for x in args.jobs.split(","))
    out: dict[str, dict[str, float]] = {}
    with cm.Gearmand() as g:
        for i, kind in enumerate(args.kinds.split(",")):
            fn = f"noop_instr_{i}"
            row: dict[str, float] = {}
            wall, user, system = drain(g, kind, fn, args.cpu_jobs)
            n = args.cpu_jobs
            row["user_us"] = user / n * 1e6
            row["system_us"] = system / n * 1e6
            row["jobs_per_s"] = n / wall
            if not args.no_callgrind:
                totals = []
                for jobs in (small, large):
                    folder = Path(args.keep) if args.keep else cm.build_dir()
                    folder.mkdir(parents=True, exist_ok=True)
                    target = folder / f"callgrind-{kind.replace('/', '_')}-{jobs}.out"
                    wrap = [
                        cm.which("valgrind"),
                        "--tool=callgrind",
                        f"--callgrind-out-file={target}",
                        "--dump-instr=no",
                        "--quiet",
                    ]
                    drain(g, kind, fn, jobs, wrap)
                    totals.append(total_instructions(target))
                row["instructions"] = (totals[1] - totals[0]) / (large - small)
            out[kind] = row
            print(
                f"{kind:>24}: user {row['user_us']:5.1f} µs/job  system {row['system_us']:5.1f}"
                f" µs/job  ({row['jobs_per_s']:,.0f} jobs/s)"
                + (
                    f"  user-space instructions {row['instructions']:,.0f}/job"
                    if "instructions" in row
                    else ""
                ),
                flush=True,
            )
    cm.save_unless_told_not("instructions", {"results": out}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
