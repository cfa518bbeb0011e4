"""Compare two versions of gearmgr with the same benchmark scripts, in interleaved rounds.

    .venv/bin/python bench/versions.py --before REV [--after DIR] [--rounds 3] \
        [--scripts respawn,reload,supervisor_cost] [-- SCRIPT_ARGS...]

``--before`` is a git revision (checked out into a temporary worktree) or a folder holding a
checkout; ``--after`` defaults to this checkout. Both run this checkout's bench/ scripts, so
only the package differs. Rounds alternate (before, after, after, before, ...) so that a
noisy minute hits both. Every numeric figure a script writes to its JSON is gathered; the
table shows, per figure, the median and the lowest round of each version and the ratio of
the medians (after / before). Results go to bench/results/versions.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common as cm

ROOT = Path(__file__).resolve().parent.parent


def checkout(rev: str, into: Path) -> Path:
    """A copy of the package at ``rev`` with this checkout's bench/ beside it."""
    folder = Path(rev)
    if folder.is_dir():
        src = folder
    else:
        src = into / "src"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(src), rev],
            check=True,
            capture_output=True,
        )
    tree = into / "tree"
    tree.mkdir()
    for name in ("gearmgr", "workers", "etc"):
        if (src / name).exists():
            shutil.copytree(src / name, tree / name)
    shutil.copytree(ROOT / "bench", tree / "bench", ignore=shutil.ignore_patterns("results"))
    return tree


def leaves(data: object, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON result, by its path."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("params", "machine"):
                continue
            out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and all(isinstance(x, (int, float)) for x in data):
        out[prefix] = statistics.median(data)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.update(leaves(value, f"{prefix}[{i}]"))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = float(data)
    return out


def run_script(tree: Path, script: str, args: list[str], out: Path) -> dict[str, float]:
    cmd = [sys.executable, str(tree / "bench" / f"{script}.py"), "--json", str(out), *args]
    # The harness itself imports this checkout's package (protocol, control client: stable on
    # the wire); the supervisors and workers it starts put the tree first (bench/common.py).
    env = {**cm.os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, check=True, cwd=tree, env=env, stdout=subprocess.DEVNULL)
    return leaves(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--before", required=True, help="git revision or checkout folder")
    ap.add_argument("--after", default=str(ROOT), help="checkout folder (default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scripts", default="respawn,reload,supervisor_cost")
    ap.add_argument("args", nargs="*", help="arguments for every script (after --)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gearmgr-versions-") as tmp:
        base = Path(tmp)
        (base / "before").mkdir()
        (base / "after").mkdir()
        trees = {
            "before": checkout(args.before, base / "before"),
            "after": checkout(args.after, base / "after"),
        }
        results: dict[str, dict[str, dict[str, list[float]]]] = {}
        for script in args.scripts.split(","):
            per: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
            for r in range(args.rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for which in order:
                    print(f"{script}: round {r + 1}, {which}", file=sys.stderr, flush=True)
                    figures = run_script(trees[which], script, args.args, base / "out.json")
                    for key, value in figures.items():
                        per[which].setdefault(key, []).append(value)
            results[script] = per
            print(f"\n== {script} ({args.rounds} interleaved rounds each) ==")
            print(
                f"{'figure':<48} {'before med':>11} {'(low)':>9} {'after med':>11} {'(low)':>9}"
                f" {'after/before':>12}"
            )
            for key in sorted(per["before"]):
                b, a = per["before"][key], per["after"].get(key)
                if not a:
                    continue
                mb, ma = statistics.median(b), statistics.median(a)
                ratio = f"{ma / mb:12.2f}" if mb else f"{'-':>12}"
                print(f"{key[:48]:<48} {mb:11.4g} {min(b):9.4g} {ma:11.4g} {min(a):9.4g} {ratio}")
        if not Path(args.before).is_dir():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base / "before/src")],
                capture_output=True,
            )
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
    cm.save("versions", {"before": args.before, "after": args.after, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
