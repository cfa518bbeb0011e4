"""The process plan: config + discovered functions -> the processes to run.

``count`` processes register every function that is not ``dedicated_only``; then every function
gets ``dedicated_count`` processes of its own. This is GearmanManager's formula except that
GearmanManager starts no dedicated processes when ``count`` > 0 and ``dedicated_count`` is unset
(``import-ini`` writes ``dedicated_count: 0`` for that case).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from gearmgr.config import Config, FunctionSettings

SHARED = "all"
#: The most processes one supervisor plans; its scoreboard keeps room beyond this for processes
#: that drain while their replacements start.
MAX_PROCESSES = 1000


@dataclass(frozen=True)
class ProcessSpec:
    """One planned process. ``key`` is stable across reloads (``all#0``, ``reverse#1``), so a
    reload can tell which processes stay, which change and which go."""

    key: str
    functions: tuple[str, ...]
    limits: FunctionSettings  # recycling limits of the process
    timeouts: tuple[tuple[str, float], ...]  # per-function job timeout, seconds (0 = none)

    @property
    def group(self) -> str:
        return self.key.rpartition("#")[0]


def make_plan(config: Config, functions: Iterable[str]) -> list[ProcessSpec]:
    """The processes to run for ``functions`` (names already filtered by include/exclude).

    A shared (``count``) process takes its recycling limits from the top-level keys; a
    dedicated process from its function's settings. Job timeouts are always per function.
    """
    names = sorted(set(functions))
    plan: list[ProcessSpec] = []
    shared = tuple(n for n in names if not config.function(n).dedicated_only)
    if config.count > 0 and shared:
        timeouts = tuple((n, config.function(n).timeout) for n in shared)
        limits = _process_limits(config.defaults)
        for i in range(config.count):
            plan.append(ProcessSpec(f"{SHARED}#{i}", shared, limits, timeouts))
    for name in names:
        settings = config.function(name)
        limits = _process_limits(settings)
        for i in range(settings.dedicated_count):
            plan.append(ProcessSpec(f"{name}#{i}", (name,), limits, ((name, settings.timeout),)))
    return plan


def _process_limits(settings: FunctionSettings) -> FunctionSettings:
    """What a process is held to. How many processes a function gets is the plan's business,
    not a process's limit: changing dedicated_count adds or drains processes and leaves the
    running ones alone."""
    return replace(settings, dedicated_count=1, dedicated_only=False)
