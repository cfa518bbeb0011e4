"""System calls per job of each worker kind while it drains a queue (strace -c).

    python bench/syscalls.py [--jobs N] [--kinds gearmgr,c,php]

strace slows every worker a lot, so only the counts matter here, not the time.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time

import common as cm


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--kinds", default="gearmgr,c,php")
    args = ap.parse_args()
    strace = cm.which("strace")
    with cm.Gearmand() as g:
        for kind in args.kinds.split(","):
            fn = f"noop_sys_{re.sub(r'[^A-Za-z0-9_]', '_', kind)}"
            cmd, env = cm.worker_command(kind, g.address, fn)
            out = cm.build_dir() / f"strace-{fn}.txt"
            proc = subprocess.Popen(cmd, env=env)
            g.wait_workers(fn, 1)
            os.kill(proc.pid, signal.SIGSTOP)
            g.prefill(fn, args.jobs)
            tracer = subprocess.Popen([strace, "-c", "-f", "-o", str(out), "-p", str(proc.pid)])
            time.sleep(0.5)
            os.kill(proc.pid, signal.SIGCONT)
            g.wait_empty(fn, timeout=300)
            tracer.send_signal(signal.SIGINT)
            tracer.wait()
            proc.terminate()
            proc.wait()
            counts = {}
            for line in out.read_text().splitlines():
                parts = line.split()
                if (
                    len(parts) >= 5
                    and parts[-1].isidentifier()
                    and parts[-1] != "total"
                    and parts[3].isdigit()
                ):
                    counts[parts[-1]] = int(parts[3])
            per_job = {
                k: v / args.jobs
                for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                if v >= args.jobs / 10
            }
            total = sum(counts.values()) / args.jobs
            print(
                f"{kind:>10}: {total:4.1f} syscalls/job  "
                + "  ".join(f"{k} {v:.2f}" for k, v in per_job.items())
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
