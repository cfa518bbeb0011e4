"""Elastic pools' keys (issue 12): max_processes, backlog_per_process, scale_down_delay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gearmgr.config import ConfigError, FunctionSettings, parse_config


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "etc/gearmgr.yaml")
    return str(caught.value)


def test_elastic_keys_per_function_with_their_defaults() -> None:
    config = parse_config(
        "functions:\n  reverse: {max_processes: 8, backlog_per_process: 2, scale_down_delay: 5s}\n"
    )
    assert config.function("reverse") == FunctionSettings(
        max_processes=8, backlog_per_process=2, scale_down_delay=5.0
    )
    assert config.elastic("reverse") and not config.elastic("other")
    assert config.defaults.max_processes == 0
    assert config.defaults.backlog_per_process == 1
    assert config.defaults.scale_down_delay == 30.0


def test_a_floor_of_zero_is_elastic() -> None:
    config = parse_config("functions:\n  reverse: {dedicated_count: 0, max_processes: 4}\n")
    assert config.elastic("reverse")


def test_max_processes_below_the_floor_is_refused_naming_the_key() -> None:
    message = error_of("functions:\n  reverse:\n    dedicated_count: 4\n    max_processes: 2\n")
    assert message == (
        "etc/gearmgr.yaml:4: functions.reverse.max_processes: expected max_processes: 0 (a fixed"
        " pool) or at least dedicated_count (4, the floor), got max_processes: 2"
    )


def test_max_processes_within_the_process_cap() -> None:
    message = error_of("max_processes: 5000\n")
    assert message == (
        "etc/gearmgr.yaml:1: max_processes: expected at most 1000 (gearmgr runs at most 1000"
        " processes), got 5000"
    )


@pytest.mark.parametrize("value", ["0", "-1", "true", '"lots"'])
def test_backlog_per_process_is_a_whole_number_of_at_least_one(value: str) -> None:
    assert "backlog_per_process: expected a whole number" in error_of(
        f"backlog_per_process: {value}\n"
    )


def test_check_shows_the_range(tmp_path: Path) -> None:
    workers = tmp_path / "workers"
    workers.mkdir()
    (workers / "reverse.py").write_text("def reverse(job):\n    return job.text[::-1]\n")
    cfg = tmp_path / "gearmgr.yaml"
    cfg.write_text("functions:\n  reverse: {dedicated_count: 1, max_processes: 8}\n")
    run = [sys.executable, "-m", "gearmgr", "check", "-c", str(cfg)]
    proc = subprocess.run(run, capture_output=True, timeout=60, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (
        "elastic reverse: 1..8 processes (backlog_per_process 1, scale_down_delay 30s)"
        in proc.stdout
    )
