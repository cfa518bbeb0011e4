"""A frozen picture of the supervisor: processes, functions, counters, servers, restarts.

Built from the pool's slots and the scoreboard at the moment it is asked for (a status request,
a scrape, a systemd STATUS= line). ``ops/status.py``, ``ops/metrics.py`` and the control
commands read this value and nothing else of the supervisor, so the operator's surfaces depend
on the supervisor's data, never on its class.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gearmgr.scoreboard import FunctionStats, Scoreboard
from gearmgr.supervisor.lifecycle import ProcessState, Slot

#: The states a process shows in status and metrics (the scoreboard's words for a live one).
SHOWN_STATES = ("idle", "busy", "stopping")


@dataclass(frozen=True)
class ProcessView:
    """One live worker process."""

    pid: int
    key: str  # its place in the plan: ``reverse#0``
    functions: tuple[str, ...]  # what it loaded (what it was asked to load, until it has)
    state: str  # one of SHOWN_STATES
    jobs: int
    jobs_failed: int
    rss: int
    started: float  # wall clock
    servers_connected: int
    last_exit: str = ""  # why its slot's previous process went ("" for a first start)
    in_hand: int = 0  # jobs running now
    places: int = 1  # jobs it may run at once (above 1: an async function's process)


@dataclass(frozen=True)
class EmptySlot:
    """A planned place with no process now: waiting to start, or backing off after quick
    deaths (a crash loop shows here)."""

    key: str
    functions: tuple[str, ...]
    state: str  # "waiting" or "backoff"
    last_exit: str
    failures: int  # quick deaths in a row
    starts_in: float  # seconds until the next start may happen


@dataclass(frozen=True)
class PoolView:
    """One function's pool: the backlog at the job servers (None: no fresh reading) and the
    dedicated pool's size, bounds and pause."""

    queued: int | None  # waiting at all servers
    running: int | None  # running at all servers
    target: int  # dedicated processes planned now
    min: int
    max: int
    paused: bool


@dataclass(frozen=True)
class FailureStats:
    """Failed and poison jobs: records written by reason (``lost``: could not be written),
    processes that died running a job and jobs quarantined, by function; jobs quarantined now;
    the record's file (None: recording off)."""

    recorded: Mapping[str, int] = field(default_factory=dict)
    deaths: Mapping[str, int] = field(default_factory=dict)
    quarantined: Mapping[str, int] = field(default_factory=dict)
    in_quarantine: int = 0
    database: str | None = None


@dataclass(frozen=True)
class Snapshot:
    pid: int
    started_at: float  # wall clock
    taken_at: float  # wall clock
    config_path: str | None
    servers: tuple[tuple[str, bool], ...]  # address, up at the last check
    processes: tuple[ProcessView, ...]
    served: tuple[str, ...]  # functions the worker folders provide
    broken: tuple[str, ...]  # functions whose worker file does not load
    function_stats: Mapping[str, FunctionStats]  # exited processes' counters plus live ones'
    restarts: Mapping[tuple[str, str], int]  # (group, reason) -> count
    stopping: bool
    waiting: int  # planned processes not running (backoff, pacing)
    pools: Mapping[str, PoolView] = field(default_factory=dict)
    failures: FailureStats = field(default_factory=FailureStats)
    empty_slots: tuple[EmptySlot, ...] = ()

    @property
    def uptime(self) -> float:
        return self.taken_at - self.started_at


def shown_state(slot: Slot, scoreboard_state: str) -> str:
    """A live process's state as status and metrics show it: a process being stopped is
    'stopping'; one still importing its code counts as 'idle'."""
    if slot.state is ProcessState.STOPPING:
        return "stopping"
    return scoreboard_state if scoreboard_state in SHOWN_STATES else "idle"


def take_snapshot(
    *,
    pid: int,
    started_at: float,
    config_path: str | None,
    servers: Iterable[str],
    servers_up: Mapping[str, bool],
    planned: Iterable[Slot],
    live: Iterable[Slot],
    loaded: Mapping[int, list[str]],
    totals: Mapping[str, FunctionStats],
    scoreboard: Scoreboard,
    served: Iterable[str],
    broken: Iterable[str],
    restarts: Mapping[tuple[str, str], int],
    stopping: bool,
    pools: Mapping[str, PoolView] | None = None,
    failures: FailureStats | None = None,
) -> Snapshot:
    """Read the scoreboard once for every live process and freeze what the surfaces show."""
    now_wall, now = time.time(), time.monotonic()
    served = tuple(sorted(served))
    stats = {name: FunctionStats() for name in served}
    stats.update(totals)  # a function whose file was removed keeps its history
    procs = []
    for slot in live:
        order = loaded.get(slot.index, [])
        view = scoreboard.read(slot.index, len(order))
        for name, st in zip(order, view.function_stats, strict=False):
            stats[name] = stats.get(name, FunctionStats()) + st
        procs.append(
            ProcessView(
                pid=slot.pid,
                key=slot.key,
                functions=tuple(order or slot.spec.functions),
                state=shown_state(slot, view.state),
                jobs=view.jobs_done,
                jobs_failed=view.jobs_failed,
                rss=view.rss,
                started=now_wall - (now - slot.started_at),
                servers_connected=view.servers_connected,
                last_exit=_label(slot),
                in_hand=view.in_hand,
                places=view.places,
            )
        )
    planned = list(planned)
    return Snapshot(
        pid=pid,
        started_at=started_at,
        taken_at=now_wall,
        config_path=config_path,
        servers=tuple((a, servers_up.get(a, False)) for a in servers),
        processes=tuple(procs),
        served=served,
        broken=tuple(sorted(broken)),
        function_stats=stats,
        restarts=dict(restarts),
        stopping=stopping,
        waiting=sum(1 for slot in planned if not slot.state.alive),
        pools=dict(pools or {}),
        failures=failures or FailureStats(),
        empty_slots=tuple(
            EmptySlot(
                key=slot.key,
                functions=tuple(slot.spec.functions),
                state=slot.state.value,
                last_exit=_label(slot),
                failures=slot.failures,
                starts_in=max(0.0, slot.next_start - now),
            )
            for slot in planned
            if not slot.state.alive
        ),
    )


def _label(slot: Slot) -> str:
    return slot.last_exit.label if slot.last_exit is not None else ""
