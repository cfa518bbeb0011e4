"""Run the whole benchmark suite and draw the chart: the one command of docs/benchmarks.md.

    bench/setup.sh && .venv/bin/python bench/run.py [--quick] [--only throughput,roundtrip,...]

Each benchmark prints its table and writes bench/results/NAME.json; then bench/chart.py draws
docs/benchmarks-throughput.png. The full suite takes about 8 minutes on a 2-core VM; --quick
about 2 (its results go to bench/results/quick/, leaving the reported figures alone).
"""

from __future__ import annotations

import argparse
import sys
import time

import cluster
import common as cm
import concurrency
import reload
import respawn
import roundtrip
import supervisor_cost
import throughput

SUITE = {
    "throughput": throughput,
    "roundtrip": roundtrip,
    "respawn": respawn,
    "reload": reload,
    "supervisor_cost": supervisor_cost,
    "cluster": cluster,
    "concurrency": concurrency,
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer jobs, rounds and trials")
    ap.add_argument("--only", default=",".join(SUITE), help="comma-separated benchmarks to run")
    args = ap.parse_args()
    print("machine:", cm.machine(), file=sys.stderr)
    t0 = time.monotonic()
    for name in args.only.split(","):
        print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        SUITE[name].main(["--quick"] if args.quick else [])
        print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    results = cm.RESULTS / "quick" if args.quick else cm.RESULTS
    if "throughput" in args.only.split(","):
        import chart  # matplotlib, from bench/setup.sh: only needed here, not for --help

        if args.quick:
            sys.argv = ["chart.py", f"{results}/throughput.json", f"{results}/throughput.png"]
        else:
            sys.argv = ["chart.py"]
        chart.main()
    print(f"\nsuite done in {time.monotonic() - t0:.0f} s; results in {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
