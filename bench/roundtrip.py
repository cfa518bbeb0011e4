"""Benchmark 2: foreground round trips, one client and one worker.

One gearmand (``--threads=1``); one worker process per pair, each on its own function, started
once. A trial runs one client process that submits N foreground jobs one after another (16-byte
payload, no-op worker) and reports jobs/s and the latency of each job (p50/p90/p99/max, measured
by the client around each call). Pairs alternate round by round.

Pairs (client -> worker): gearmgr -> gearmgr, c -> c (libgearman), php -> php (pecl gearman),
and two mixed pairs that isolate one side: c -> gearmgr (gearmgr's worker) and gearmgr -> c
(gearmgr's client).

    python bench/roundtrip.py [--quick] [--jobs N] [--rounds R] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import common as cm

PAIRS = [("gearmgr", "gearmgr"), ("c", "c"), ("php", "php"), ("c", "gearmgr"), ("gearmgr", "c")]


def client_command(kind: str, address: str, function: str, n: int) -> tuple[list[str], dict]:
    host, port = address.rsplit(":", 1)
    env = dict(os.environ)
    if kind == "c":
        return [str(cm.compile_c("cclient")), host, port, function, str(n)], env
    if kind == "php":
        return ["php", str(cm.BENCH / "php_client.php"), host, port, function, str(n)], env
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cm.ROOT), env.get("PYTHONPATH", "")) if p)
    return [cm.PY, str(cm.BENCH / "gm_client.py"), address, function, str(n)], env


def run(jobs: int, rounds: int, pairs=PAIRS, verbose: bool = True) -> dict:
    trials = []
    with cm.Gearmand() as g:
        pools = {}
        try:
            for wk in sorted({w for _, w in pairs}):
                pools[wk] = cm.Pool(wk, 1, g, f"rt_{wk}").start()
            for r in range(rounds):
                order = pairs[r % len(pairs) :] + pairs[: r % len(pairs)]
                for client, worker in order:
                    cmd, env = client_command(client, g.address, f"rt_{worker}", jobs)
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
                    if out.returncode != 0:
                        raise RuntimeError(f"{client} client failed: {out.stderr}")
                    n, secs, p50, p90, p99, mx = out.stdout.split()
                    t = {
                        "round": r,
                        "pair": f"{client} -> {worker}",
                        "jobs_per_s": int(n) / float(secs),
                        "p50_us": float(p50),
                        "p90_us": float(p90),
                        "p99_us": float(p99),
                        "max_us": float(mx),
                    }
                    trials.append(t)
                    if verbose:
                        print(
                            f"  round {r + 1}/{rounds} {t['pair']:>18}:"
                            f" {t['jobs_per_s']:8,.0f} jobs/s"
                            f"  p50 {t['p50_us']:6.0f} us  p99 {t['p99_us']:6.0f} us",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for p in pools.values():
                p.stop()
    names = [f"{c} -> {w}" for c, w in pairs]
    rows = []
    for name in names:
        t = [x for x in trials if x["pair"] == name]
        rows.append(
            {
                "pair": name,
                **{
                    k: cm.stats(x[k] for x in t)
                    for k in ("jobs_per_s", "p50_us", "p90_us", "p99_us", "max_us")
                },
            }
        )
    ratios = []
    for num in names:
        for den in ("c -> c", "php -> php"):
            if num == den or (num, den) == ("php -> php", "c -> c"):
                continue
            per = []
            for r in range(rounds):
                a = [x for x in trials if x["round"] == r and x["pair"] == num]
                b = [x for x in trials if x["round"] == r and x["pair"] == den]
                if a and b:
                    per.append(a[0]["jobs_per_s"] / b[0]["jobs_per_s"])
            ratios.append({"pair": num, "versus": den, "ratio": cm.stats(per)})
    return {"trials": trials, "rows": rows, "ratios": ratios}


def report(result: dict) -> str:
    rows = [
        [
            r["pair"],
            cm.fmt(r["jobs_per_s"]["min"]),
            cm.fmt(r["jobs_per_s"]["median"]),
            cm.fmt(r["jobs_per_s"]["max"]),
            cm.fmt(r["p50_us"]["median"]),
            cm.fmt(r["p90_us"]["median"]),
            cm.fmt(r["p99_us"]["median"]),
            cm.fmt(r["max_us"]["median"]),
        ]
        for r in result["rows"]
    ]
    out = cm.table(
        ["client -> worker", "jobs/s min", "median", "max", "p50 µs", "p90 µs", "p99 µs", "max µs"],
        rows,
    )
    out += "\n\n(latency columns: median over the rounds of each round's percentile)\n\n"
    out += "Ratios of jobs/s within each round:\n\n"
    out += cm.table(
        ["ratio", "min", "median", "max"],
        [
            [
                f"({x['pair']}) / ({x['versus']})",
                cm.fmt(x["ratio"]["min"], 2),
                cm.fmt(x["ratio"]["median"], 2),
                cm.fmt(x["ratio"]["max"], 2),
            ]
            for x in result["ratios"]
        ],
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--json")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    jobs = args.jobs or (2000 if args.quick else 5000)
    rounds = args.rounds or (3 if args.quick else 5)
    print(f"roundtrip: {jobs} foreground jobs per trial, {rounds} rounds", file=sys.stderr)
    result = run(jobs, rounds)
    result["params"] = {"jobs": jobs, "rounds": rounds, "gearmand_threads": 1}
    print(report(result))
    cm.save_unless_told_not("roundtrip", result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
