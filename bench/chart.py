"""Draw docs/benchmarks-throughput.png from bench/results/throughput.json (matplotlib).

    python bench/chart.py [RESULTS.json] [OUT.png]

Bars: median jobs/s per worker process for each competitor and pool size; whiskers: min and max
over the rounds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LABELS = {
    "gearmgr": "gearmgr worker",
    "gearmgr-sup": "gearmgr under the supervisor",
    "c": "C libgearman worker",
    "php": "PHP pecl gearman worker",
}


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results" / "throughput.json"
    out = (
        Path(sys.argv[2])
        if len(sys.argv) > 2
        else BENCH.parent / "docs" / "benchmarks-throughput.png"
    )
    try:
        import matplotlib
    except ImportError:
        print("chart.py: matplotlib is missing: run bench/setup.sh", file=sys.stderr)
        return 1
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(src.read_text())
    kinds = data["params"]["kinds"]
    pools = data["params"]["pools"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        med, lo, hi = [], [], []
        for n in pools:
            row = next(r for r in data["rows"] if r["kind"] == kind and r["processes"] == n)
            s = row["jobs_per_s_per_process"]
            med.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
        xs = [p + (i - (len(kinds) - 1) / 2) * width for p in range(len(pools))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=LABELS.get(kind, kind))
    ax.set_xticks(range(len(pools)))
    ax.set_xticklabels([f"{n} process{'es' if n > 1 else ''}" for n in pools])
    ax.set_ylabel("jobs/s per worker process")
    m = data.get("machine", {})
    ax.set_title(
        f"Draining {data['params']['jobs']:,} no-op background jobs (gearmand --threads=1)\n"
        f"{m.get('nproc', '?')} cores, {m.get('cpu', '')};"
        f" median of {data['params']['rounds']} rounds, whiskers min-max",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
