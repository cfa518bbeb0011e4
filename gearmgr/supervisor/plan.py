"""The process plan: config + discovered functions -> the processes to run.

``count`` processes register every function that is not ``dedicated_only``; then every function
gets ``dedicated_count`` processes of its own. This is GearmanManager's formula except that
GearmanManager starts no dedicated processes when ``count`` > 0 and ``dedicated_count`` is unset
(``import-ini`` writes ``dedicated_count: 0`` for that case).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gearmgr import jitter
from gearmgr.config import Config, FunctionSettings
from gearmgr.failures.store import RecordSettings
from gearmgr.worker.spec import WorkerSpec

SHARED = "all"
#: The most processes one supervisor plans; its scoreboard keeps room beyond this for processes
#: that drain while their replacements start.
MAX_PROCESSES = 1000


@dataclass(frozen=True)
class Limits:
    """What one process is held to: its recycling limits and its stop grace. How many
    processes a function gets is the plan's business, not a process's limit: changing
    dedicated_count adds or drains processes and leaves the running ones alone."""

    max_jobs: int = 0
    max_lifetime: float = 0.0  # seconds
    lifetime_jitter: float = 0.0  # seconds
    max_memory: int = 0  # bytes
    graceful_timeout: float = 30.0  # seconds

    @classmethod
    def of(cls, settings: FunctionSettings) -> Limits:
        return cls(
            settings.max_jobs,
            settings.max_lifetime,
            settings.lifetime_jitter,
            settings.max_memory,
            settings.graceful_timeout,
        )


@dataclass(frozen=True)
class ProcessSpec:
    """One planned process. ``key`` is stable across reloads (``all#0``, ``reverse#1``), so a
    reload can tell which processes stay, which change and which go."""

    key: str
    functions: tuple[str, ...]
    limits: Limits
    timeouts: tuple[tuple[str, float], ...]  # per-function job timeout, seconds (0 = none)
    concurrency: int = 1  # jobs at once (a dedicated process of an async function)

    @property
    def group(self) -> str:
        return self.key.rpartition("#")[0]

    @property
    def has_timeouts(self) -> bool:
        return any(t for _, t in self.timeouts)


def dedicated_spec(config: Config, name: str, number: int) -> ProcessSpec:
    """Process ``name#number`` of function ``name``'s dedicated pool."""
    settings = config.function(name)
    return ProcessSpec(
        f"{name}#{number}",
        (name,),
        Limits.of(settings),
        ((name, settings.timeout),),
        settings.concurrency,
    )


def make_plan(
    config: Config,
    functions: Iterable[str],
    paused: Collection[str] = (),
    current: Mapping[str, Collection[int]] | None = None,
) -> list[ProcessSpec]:
    """The processes to run for ``functions`` (names already filtered by include/exclude).

    A shared (``count``) process takes its recycling limits from the top-level keys; a
    dedicated process from its function's settings. Job timeouts are always per function.

    Shared processes run one job at a time (an async function there too); a dedicated process
    runs its function's ``concurrency`` jobs at once.

    ``paused`` functions get no dedicated process and the shared ones leave them out.
    ``current`` holds, for the functions whose pools are sized at run time (elastic, or
    ``gearmgr scale``), the numbers of the dedicated processes they hold now: those stay in
    the plan (the autoscaler drains them one idle process at a time), topped up to the floor.
    """
    names = sorted(set(functions))
    plan: list[ProcessSpec] = []
    shared = tuple(n for n in names if not config.function(n).dedicated_only and n not in paused)
    if config.count > 0 and shared:
        timeouts = tuple((n, config.function(n).timeout) for n in shared)
        limits = Limits.of(config.defaults)
        for i in range(config.count):
            plan.append(ProcessSpec(f"{SHARED}#{i}", shared, limits, timeouts))
    for name in names:
        if name in paused:
            continue
        numbers = set(current.get(name, ())) if current is not None else set()
        free = (i for i in itertools.count() if i not in numbers)
        while len(numbers) < config.function(name).dedicated_count:
            numbers.add(next(free))
        plan += [dedicated_spec(config, name, i) for i in sorted(numbers)]
    return plan


def worker_spec(
    spec: ProcessSpec,
    files: Mapping[str, Path],
    servers: tuple[str, ...],
    slot: int,
    jitter: Callable[[float, float], float] = jitter.uniform,
    records: RecordSettings | None = None,
) -> WorkerSpec:
    """The whole of what the process that fills ``spec`` runs: ``files`` are the worker files
    it is to load (the functions whose file is known broken already left out); the lifetime's
    jitter is drawn here, once per process."""
    limits = spec.limits
    lifetime = limits.max_lifetime
    if lifetime and limits.lifetime_jitter:
        lifetime += jitter(0, limits.lifetime_jitter)
    return WorkerSpec(
        key=spec.key,
        files=tuple(sorted(files.items())),
        servers=servers,
        timeouts=spec.timeouts,
        max_jobs=limits.max_jobs,
        max_lifetime=lifetime,
        max_memory=limits.max_memory,
        slot=slot,
        records=records,
        concurrency=spec.concurrency,
    )
