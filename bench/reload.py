"""Benchmark 4: reload latency: save a changed worker file, time until the new code answers.

``gearmgr run`` with ``auto_reload: true`` and 2 processes of a function ``version`` whose worker
file returns ``v0``. A client (gearmgr's Client, in this process) submits foreground jobs in a
tight loop. A trial rewrites the file to return ``v<N>`` (written to a temp file and renamed over
it, as editors and deploy tools do) and records:

* first: time from the save until the first job answered with the new version;
* all: time until 50 answers in a row carry the new version (the old processes are drained).

Mode ``hup`` does the same with ``auto_reload: false`` and a SIGHUP to the supervisor right after
the save (what ``gearmgr reload`` does).

    python bench/reload.py [--quick] [--trials N] [--modes auto,hup] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import common as cm

FUNCTION = "version"
SOURCE = '''"""Answers with the version of this file (bench/reload.py)."""


def version(job):
    return "{v}"
'''


def write_version(folder: cm.Path, v: str) -> None:
    tmp = folder / ".version.py.tmp"
    tmp.write_text(SOURCE.format(v=v))
    os.replace(tmp, folder / f"{FUNCTION}.py")


def run_mode(mode: str, trials: int, processes: int, verbose: bool = True) -> dict:
    from gearmgr.wire.client import Client

    first, full = [], []
    with cm.Gearmand() as g:
        sup = cm.Supervised(
            {
                "servers": [g.address],
                "dedicated_count": processes,
                "auto_reload": mode == "auto",
                "graceful_timeout": "5s",
            }
        )
        write_version(sup.workers, "v0")
        try:
            sup.start()
            g.wait_workers(FUNCTION, processes, timeout=60)
            client = Client([g.address], timeout=10)
            assert client.submit(FUNCTION, b"") == b"v0"
            for i in range(1, trials + 1):
                time.sleep(1.2)  # let the previous replacement settle (and mtimes differ)
                want = f"v{i}".encode()
                t0 = time.perf_counter()
                write_version(sup.workers, f"v{i}")
                if mode == "hup":
                    os.kill(sup.pid, signal.SIGHUP)
                t_first = None
                streak = 0
                while True:
                    answer = client.submit(FUNCTION, b"")
                    now = time.perf_counter()
                    if answer == want:
                        if t_first is None:
                            t_first = now
                        streak += 1
                        if streak >= 50:
                            break
                    else:
                        streak = 0
                    if now - t0 > 30:
                        raise TimeoutError(
                            f"{mode}: the new code did not answer within 30 s"
                            f" (last answer {answer!r})"
                        )
                first.append((t_first - t0) * 1000)
                full.append((now - t0) * 1000)
                if verbose:
                    print(
                        f"  {mode} {i}/{trials}: new code answered after {first[-1]:.0f} ms,"
                        f" all answers new after {full[-1]:.0f} ms",
                        file=sys.stderr,
                    )
            client.close()
            sup.check_alive()
        finally:
            sup.stop()
    return {"first_ms": first, "all_ms": full, "first": cm.stats(first), "all": cm.stats(full)}


def run(modes: list[str], trials: int, processes: int) -> dict:
    return {mode: run_mode(mode, trials, processes) for mode in modes}


def report(result: dict) -> str:
    rows = []
    for mode, r in result.items():
        if mode == "params":
            continue
        for key, label in (
            ("first", "first answer from the new code"),
            ("all", "all answers from the new code"),
        ):
            s = r[key]
            rows.append(
                [mode, label, s["n"], cm.fmt(s["min"]), cm.fmt(s["median"]), cm.fmt(s["max"])]
            )
    return cm.table(["mode", "save -> ", "trials", "min ms", "median ms", "max ms"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--modes", default="auto,hup")
    ap.add_argument("--json")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    trials = args.trials or (3 if args.quick else 8)
    print(f"reload: {trials} saves per mode, {args.processes} processes", file=sys.stderr)
    result = run(args.modes.split(","), trials, args.processes)
    print(report(result))
    result["params"] = {"trials": trials, "processes": args.processes}
    cm.save_unless_told_not("reload", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
