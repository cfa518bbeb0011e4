"""Failed jobs (issue 14): what recording a failure costs, and how big the record grows.

1. Recording rate: one worker process (bench/gm_worker.py, set up as the supervisor runs it)
   drains N pre-filled background jobs of a function that raises, with the record on
   (``--records``: each failure written to a SQLite file, WAL, before its WORK_FAIL) and off,
   in interleaved rounds: failed jobs per second and worker CPU per job.
2. Size: 100,000 records of 1 KiB workloads (and a traceback of about 600 characters) written
   through gearmgr.failures.store in one process: the file's size after a checkpoint, and the
   time per record (retention included: failed_jobs_max = 100000).

    python bench/failed_jobs.py [--jobs N] [--rounds R] [--records N] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import common as cm

from gearmgr.failures.store import FailedJobs, Failure, RecordSettings

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/workers/resize.py", line 42, in resize\n'
    "    image = decode(job.data)\n"
    '  File "/srv/app/lib/images.py", line 118, in decode\n'
    "    raise ValueError(f'unsupported format: {kind!r}')\n"
) * 3 + "ValueError: unsupported format: 'webp'\n"


def drain(g: cm.Gearmand, record: bool, jobs: int, folder: Path) -> dict:
    """One trial: a fresh worker registered then stopped, N failing jobs queued, drained."""
    function = f"fail_{'rec' if record else 'norec'}"
    db = folder / f"{function}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cmd, env = cm.worker_command("gearmgr", g.address, function)
    cmd += ["--fail", *(["--records", str(db)] if record else [])]
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        g.wait_workers(function, 1)
        os.kill(proc.pid, signal.SIGSTOP)
        g.prefill(function, jobs)
        cm.wait_for(lambda: g.queued(function) >= jobs, 10, 0.002, f"{jobs} queued")
        cpu0 = cm.threads_cpu(proc.pid)
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGCONT)
        t1 = g.wait_empty(function)
        cpu1 = cm.threads_cpu(proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
    kept = FailedJobs(RecordSettings(str(db)), create=False).count() if record else 0
    return {
        "record": record,
        "jobs": jobs,
        "jobs_per_s": jobs / (t1 - t0),
        "worker_cpu_us_per_job": (cpu1 - cpu0) / jobs * 1e6,
        "records": kept,
    }


def size(records: int, folder: Path) -> dict:
    path = folder / "size.db"
    store = FailedJobs(RecordSettings(str(path), max=100_000))
    workload = os.urandom(1024)
    t0 = time.perf_counter()
    for i in range(records):
        store.add(
            Failure(
                function="resize",
                handle=f"H:worker-host-01:{i}".encode(),
                unique=f"3f2b8c1e-5d6a-4e7f-9a0b-{i:012d}".encode(),
                workload=workload,
                reason="exception",
                error=TRACEBACK,
            )
        )
    seconds = time.perf_counter() - t0
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    files = sum(
        Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
    )
    return {
        "records": records,
        "bytes": files,
        "bytes_per_record": files / records,
        "us_per_record": seconds / records * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--json", help="default bench/results/failed_jobs.json")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    folder = cm.workdir("gearmgr-bench-failed-")
    trials = []
    with cm.Gearmand(threads=1) as g:
        for r in range(args.rounds):
            for record in (True, False) if r % 2 == 0 else (False, True):
                t = drain(g, record, args.jobs, folder)
                t["round"] = r
                trials.append(t)
                print(
                    f"  round {r + 1}/{args.rounds} record={'on ' if record else 'off'}"
                    f" {t['jobs_per_s']:>8,.0f} failed jobs/s"
                    f"  worker {t['worker_cpu_us_per_job']:6.1f} us/job  records {t['records']}",
                    file=sys.stderr,
                    flush=True,
                )
    summary = {}
    for record in (True, False):
        mine = [t for t in trials if t["record"] is record]
        summary["on" if record else "off"] = {
            "jobs_per_s": cm.stats(t["jobs_per_s"] for t in mine),
            "worker_cpu_us_per_job": cm.stats(t["worker_cpu_us_per_job"] for t in mine),
            "all_recorded": all(t["records"] == t["jobs"] for t in mine if record),
        }
    sized = size(args.records, folder)
    rows = [
        [
            name,
            cm.fmt(s["jobs_per_s"]["median"]),
            cm.fmt(s["jobs_per_s"]["max"]),
            cm.fmt(s["worker_cpu_us_per_job"]["median"], 1),
            cm.fmt(s["worker_cpu_us_per_job"]["min"], 1),
        ]
        for name, s in summary.items()
    ]
    print(
        f"\nfailing no-op jobs, one worker process, {args.jobs} per trial, {args.rounds} rounds\n"
    )
    print(
        cm.table(["record", "jobs/s median", "jobs/s best", "us/job median", "us/job lowest"], rows)
    )
    print(
        f"\n{sized['records']:,} records of 1 KiB: {sized['bytes'] / 2**20:.1f} MiB"
        f" ({sized['bytes_per_record']:,.0f} bytes per record),"
        f" {sized['us_per_record']:.0f} us per record written"
    )
    for name in os.listdir(folder):
        (folder / name).unlink()
    folder.rmdir()
    result = {"trials": trials, "summary": summary, "size": sized, "params": vars(args)}
    cm.save_unless_told_not("failed_jobs", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
