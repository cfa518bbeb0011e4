"""The bench scripts' --help works on a fresh checkout, before bench/setup.sh adds matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = [
    "run",
    "throughput",
    "roundtrip",
    "respawn",
    "reload",
    "supervisor_cost",
    "autoscale",
    "cluster",
    "failed_jobs",
    "top_cost",
    "concurrency",
    "instructions",
]

# Run a script as __main__ with matplotlib made unimportable, as before bench/setup.sh.
WITHOUT_MATPLOTLIB = (
    "import runpy, sys; sys.modules['matplotlib'] = None; sys.path.insert(0, sys.argv[1]); "
    "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works_without_matplotlib(script: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_MATPLOTLIB,
            str(BENCH),
            str(BENCH / f"{script}.py"),
            "--help",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_chart_without_matplotlib_says_what_to_install() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, str(BENCH), str(BENCH / "chart.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "chart.py: matplotlib is missing: run bench/setup.sh"
