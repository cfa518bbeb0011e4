"""Benchmark: what `gearmgr top` costs (issue 15: top and the supervisor's answers together at
most 1 % of a core at 1 refresh/s with 32 processes).

A supervisor runs ``--processes`` no-op worker processes (4 functions, a quarter each) on a
private gearmand, with a light stream of jobs (``--rate`` a second, from a thread of this
script) so that the frame's rates and percentiles move. Rounds alternate:

* quiet: the supervisor's CPU time (schedstat, all threads) over ``--window`` seconds, nothing
  asking it anything;
* top: ``gearmgr top --interval 1`` running in a pseudo-terminal of 80x24 (a thread of this
  script reads what it draws, as a terminal would), started 3 s before the window so that its
  start-up is left out; over the window, the supervisor's CPU time and top's own.

Reported per round and as medians over the rounds (and the lowest round): the supervisor quiet,
the supervisor with top, the difference (what answering top costs it), top's own CPU, and the
sum of the last two against the 1 % target; the bytes top sends to the terminal a second.

    python bench/top_cost.py [--quick] [--rounds N] [--window S] [--processes N] [--json FILE]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading
import time

import common as cm

FUNCTIONS = ("alpha", "bravo", "charlie", "delta")


def start_supervisor(g: cm.Gearmand, processes: int) -> cm.Supervised:
    each = max(1, processes // len(FUNCTIONS))
    sup = cm.Supervised(
        {"servers": [g.address], "dedicated_count": each, "graceful_timeout": "5s"},
        functions=FUNCTIONS,
    )
    sup.start()
    cm.wait_for(
        lambda: sup.check_alive() or all(g.workers_of(f) >= each for f in FUNCTIONS),
        60,
        0.05,
        f"{each * len(FUNCTIONS)} workers registered",
    )
    return sup


class Jobs(threading.Thread):
    """A steady stream of background jobs, round robin over the functions."""

    def __init__(self, address: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.address, self.rate = address, rate
        self.stop = threading.Event()

    def run(self) -> None:
        from gearmgr.wire.client import Client

        if self.rate <= 0:
            return
        with Client(self.address) as client:
            n = 0
            while not self.stop.wait(1 / self.rate):
                client.submit(FUNCTIONS[n % len(FUNCTIONS)], b"x", background=True)
                n += 1


class TopInTerminal:
    """``gearmgr top`` on the slave side of a pty; a thread drains the master side."""

    def __init__(self, sup: cm.Supervised, cols: int = 80, rows: int = 24) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**sup.env, "TERM": "xterm"}
        self.proc = subprocess.Popen(
            [cm.PY, "-m", "gearmgr", "top", "-c", str(sup.config_path), "--interval", "1"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.bytes = 0
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)

    def quit(self) -> int:
        os.write(self.master, b"q")
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cm.kill_tree(self.proc)  # type: ignore[arg-type]
            code = -9
        self.reader.join(timeout=5)
        os.close(self.master)
        return code


def window(sup: cm.Supervised, seconds: float, top: TopInTerminal | None) -> dict:
    s0, t0, b0 = cm.threads_cpu(sup.pid), time.perf_counter(), top.bytes if top else 0
    c0 = cm.threads_cpu(top.proc.pid) if top else 0.0
    time.sleep(seconds)
    s1, t1 = cm.threads_cpu(sup.pid), time.perf_counter()
    c1 = cm.threads_cpu(top.proc.pid) if top else 0.0
    span = t1 - t0
    out = {"supervisor_pct": (s1 - s0) / span * 100, "seconds": span}
    if top:
        out["top_pct"] = (c1 - c0) / span * 100
        out["bytes_per_s"] = (top.bytes - b0) / span
    return out


def run(rounds: int, seconds: float, processes: int, rate: float) -> dict:
    out: dict = {"rounds": [], "processes": processes, "window_s": seconds, "jobs_per_s": rate}
    with cm.Gearmand() as g:
        sup = start_supervisor(g, processes)
        jobs = Jobs(g.address, rate)
        jobs.start()
        try:
            time.sleep(2.0)
            for r in range(rounds):
                quiet = window(sup, seconds, None)
                top = TopInTerminal(sup)
                time.sleep(3.0)  # its start-up (interpreter, imports, first frame) left out
                if top.proc.poll() is not None:
                    raise RuntimeError(f"gearmgr top exited with {top.proc.returncode}")
                busy = window(sup, seconds, top)
                code = top.quit()
                if code != 0:
                    raise RuntimeError(f"gearmgr top exited with {code} on q")
                answers = busy["supervisor_pct"] - quiet["supervisor_pct"]
                row = {
                    "round": r,
                    "quiet_supervisor_pct": quiet["supervisor_pct"],
                    "top_supervisor_pct": busy["supervisor_pct"],
                    "answers_pct": answers,
                    "top_pct": busy["top_pct"],
                    "total_pct": answers + busy["top_pct"],
                    "bytes_per_s": busy["bytes_per_s"],
                }
                out["rounds"].append(row)
                print(
                    f"  round {r}: supervisor quiet {row['quiet_supervisor_pct']:.3f} %,"
                    f" with top {row['top_supervisor_pct']:.3f} %; top itself"
                    f" {row['top_pct']:.3f} %; together {row['total_pct']:.3f} % of a core",
                    file=sys.stderr,
                )
                sup.check_alive()
        finally:
            jobs.stop.set()
            jobs.join(timeout=5)
            sup.stop(timeout=30)
    keys = (
        "quiet_supervisor_pct",
        "top_supervisor_pct",
        "answers_pct",
        "top_pct",
        "total_pct",
        "bytes_per_s",
    )
    out["summary"] = {k: cm.stats(x[k] for x in out["rounds"]) for k in keys}
    return out


def report(result: dict) -> str:
    s = result["summary"]
    labels = [
        ("quiet_supervisor_pct", "supervisor, nothing asking (% of a core)", 3),
        ("top_supervisor_pct", "supervisor, top refreshing every 1 s (% of a core)", 3),
        ("answers_pct", "answering top: the difference (% of a core)", 3),
        ("top_pct", "gearmgr top itself (% of a core)", 3),
        ("total_pct", "top + the supervisor's answers (% of a core)", 3),
        ("bytes_per_s", "bytes top sends to the terminal a second", 0),
    ]
    rows = [
        [label, cm.fmt(s[k]["min"], d), cm.fmt(s[k]["median"], d), cm.fmt(s[k]["max"], d)]
        for k, label, d in labels
    ]
    head = (
        f"{result['processes']} processes, {result['jobs_per_s']:g} jobs/s, windows of"
        f" {result['window_s']:g} s, {len(result['rounds'])} interleaved rounds\n"
    )
    return head + cm.table(["measure", "lowest", "median", "highest"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=20.0, help="seconds per window")
    parser.add_argument("--processes", type=int, default=32)
    parser.add_argument("--rate", type=float, default=50.0, help="background jobs a second")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--no-save", action="store_true", help="write no result file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.window = 2, 5.0
    result = run(args.rounds, args.window, args.processes, args.rate)
    print(report(result))
    cm.save_unless_told_not("top_cost", result, args)


if __name__ == "__main__":
    main()
