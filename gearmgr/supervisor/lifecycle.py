"""A supervised process's life as one state machine, driven by ``now``; and why processes exit.

One vocabulary for what used to be three (slot states, scoreboard states, exit-reason codes and
strings)::

    WAITING --spawned--> STARTING --registered--> REGISTERED
       ^                    |  \\                     |
       |                    |   +------stop---------+--> STOPPING
       |                  exited                          |
       +---- exited (delay 0) ----------------------------+
    BACKOFF <-- exited (delay > 0: quick deaths in a row)
    BACKOFF --spawned--> STARTING   (once ``now >= next_start``)

``registered`` is read from the scoreboard (the worker shows itself idle or busy with a job
server connected) by whoever observes it, once per process: the pool, the rolling replacement,
systemd readiness and the healing of broken files all ask ``state is REGISTERED``.

After a death the next start comes at once after a clean recycle (max_jobs, max_lifetime, a
stop the supervisor asked for), and with an exponentially growing, capped, jittered delay after
quick deaths in a row, so a broken worker file or a crash loop never storms and never gives up
for good. A crash, a job killed for its timeout or a memory recycle counts toward that backoff
unless the process had a stable run: up STABLE_AFTER seconds and productive. Nothing here
forks, sleeps or reads the clock. The embedded gearmand's restarts use the same machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gearmgr import scoreboard as sb
from gearmgr.jitter import uniform
from gearmgr.supervisor.plan import ProcessSpec

STABLE_AFTER = 10.0  # seconds of uptime after which a death no longer counts as quick
BACKOFF_BASE = 0.5
BACKOFF_MAX = 60.0


class ProcessState(enum.Enum):
    WAITING = "waiting"  # no process; may start at next_start
    BACKOFF = "backoff"  # died quickly; waits until next_start
    STARTING = "starting"  # forked; loading its code, not yet registered with a job server
    REGISTERED = "registered"  # has shown itself idle or busy with a job server connected
    STOPPING = "stopping"  # asked to stop; SIGKILL at kill_at

    @property
    def alive(self) -> bool:
        """A process holds the place (it may be stopping)."""
        return self is _STARTING or self is _REGISTERED or self is _STOPPING  # identity: cheap


_ALIVE = (ProcessState.STARTING, ProcessState.REGISTERED, ProcessState.STOPPING)
_STARTING, _REGISTERED, _STOPPING = _ALIVE
_WAITING, _BACKOFF = ProcessState.WAITING, ProcessState.BACKOFF


class ExitReason(enum.IntEnum):
    """Why a process went. The values below 100 are the scoreboard's REASON_* codes, written by
    the worker itself; the others are the supervisor's own reasons for stopping a process."""

    CRASH = sb.REASON_NONE
    MAX_JOBS = sb.REASON_MAX_JOBS
    MAX_LIFETIME = sb.REASON_MAX_LIFETIME
    MAX_MEMORY = sb.REASON_MAX_MEMORY
    STOP = sb.REASON_STOP
    PARENT_GONE = sb.REASON_PARENT_GONE
    TIMEOUT = sb.REASON_TIMEOUT
    IMPORT = sb.REASON_NO_FUNCTIONS  # none of its worker files could be loaded
    JOB_EXIT = sb.REASON_JOB_EXIT  # a job called sys.exit() or raised KeyboardInterrupt
    RELOAD = 100  # replaced by a reload, a code change or `gearmgr restart`
    RETIRE = 101  # no longer in the plan

    @property
    def label(self) -> str:
        """The word of logs, status and metrics: 'crash', 'max_jobs', 'import', 'reload'."""
        return sb.REASON_NAMES.get(self.value, self.name.lower())

    @classmethod
    def from_label(cls, label: str) -> ExitReason:
        for reason in cls:
            if reason.label == label:
                return reason
        return cls.CRASH


#: Reasons counted as restarts under their own name; every other unasked death is a "crash".
RESTART_REASONS = frozenset(
    {
        ExitReason.MAX_JOBS,
        ExitReason.MAX_LIFETIME,
        ExitReason.MAX_MEMORY,
        ExitReason.TIMEOUT,
        ExitReason.RELOAD,
    }
)
#: Deaths that count toward the backoff even with exit status 0: a job that kills every
#: process that takes it must back its slot off, not fork it again and again.
COUNTED = frozenset({ExitReason.TIMEOUT, ExitReason.MAX_MEMORY})


def backoff_delay(failures: int, jitter: float = 0.1) -> float:
    """Delay before restart number ``failures`` of a crash loop: 0 for the first quick death,
    then 0.5 s, 1 s, 2 s ... capped at 60 s, each +/- ``jitter``."""
    if failures <= 1:
        return 0.0
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 2))
    return delay * uniform(1 - jitter, 1 + jitter)


class TransitionError(RuntimeError):
    """A transition the state machine does not allow: a bug in the supervisor."""


@dataclass(frozen=True)
class Exit:
    """What came of a death: ``reason`` as the log says it; ``restart`` the reason counted
    among the restarts (None for a stop the supervisor asked for); ``delay`` before the next
    start."""

    reason: ExitReason
    restart: ExitReason | None
    delay: float
    asked: bool  # the supervisor had asked it to stop


class Lifecycle:
    """The state of one supervised process's place: its pid while alive, the backoff between
    lives. Every change goes through a method named for its event."""

    def __init__(self) -> None:
        self.state = ProcessState.WAITING
        self.pid = 0
        self.started_at = 0.0
        self.next_start = 0.0
        self.kill_at = 0.0
        self.failures = 0  # quick deaths in a row
        self.stop_reason: ExitReason | None = None  # why the supervisor stopped it
        self.code_loaded = False  # the scoreboard showed it idle or busy
        self.last_exit: ExitReason | None = None  # why its last process went (`gearmgr top`)

    def due(self, now: float) -> bool:
        """May a process start now?"""
        state = self.state
        return (state is _WAITING or state is _BACKOFF) and now >= self.next_start

    def _expect(self, event: str, *states: ProcessState) -> None:
        if self.state not in states:
            raise TransitionError(f"{event} in state {self.state.value}")

    def spawned(self, pid: int, now: float) -> None:
        self._expect("spawned", ProcessState.WAITING, ProcessState.BACKOFF)
        self.state = ProcessState.STARTING
        self.pid = pid
        self.started_at = now
        self.stop_reason = None
        self.code_loaded = False

    def spawn_failed(self, now: float) -> float:
        """fork() failed: a quick death without a process."""
        self._expect("spawn_failed", ProcessState.WAITING, ProcessState.BACKOFF)
        self.started_at = now
        return self._next_start(now, clean=False, productive=False)

    def observe(self, view_state: str, servers_connected: int) -> bool:
        """What the scoreboard shows of the process; True when it has just registered."""
        if view_state not in ("idle", "busy"):
            return False
        self.code_loaded = True
        if self.state is ProcessState.STARTING and servers_connected:
            self.state = ProcessState.REGISTERED
            return True
        return False

    def stop(self, now: float, grace: float, reason: ExitReason, force: bool = False) -> bool:
        """The supervisor asks the process to stop (TERM, or KILL with ``grace`` 0): SIGKILL
        at ``now + grace``. A second request keeps the first one's deadline and reason unless
        ``force`` (a job-timeout kill). Returns whether the state changed."""
        self._expect("stop", *_ALIVE)
        if self.state is ProcessState.STOPPING and not force:
            return False
        self.state = ProcessState.STOPPING
        self.kill_at = now + grace
        self.stop_reason = reason
        return True

    def killed(self, now: float) -> None:
        """SIGKILL went out at the stop deadline: no deadline any more, only the reaping."""
        self._expect("killed", ProcessState.STOPPING)
        self.kill_at = now + 3600

    def exited(
        self, now: float, *, exit_ok: bool, reported: ExitReason, busy: bool, jobs: tuple[int, int]
    ) -> Exit:
        """The process is gone. ``exit_ok``: it exited with status 0; ``reported``: the reason
        it wrote in the scoreboard; ``busy``: it had a job in hand; ``jobs``: (done, failed).
        Decides the reason, whether it counts as a restart, and the delay before the next."""
        self._expect("exited", *_ALIVE)
        asked = self.state is ProcessState.STOPPING
        reason = self.stop_reason if asked and self.stop_reason is not None else reported
        if not asked and reason in (ExitReason.STOP, ExitReason.PARENT_GONE):
            reason = ExitReason.CRASH  # stopped by someone else (an outside TERM, SystemExit)
        self.last_exit = reason
        clean = exit_ok and reason not in (ExitReason.CRASH, ExitReason.JOB_EXIT)
        if asked and reason in (ExitReason.STOP, ExitReason.RETIRE):
            self._next_start(now, clean=True, productive=True)
            return Exit(reason, None, 0.0, asked)
        restart = reason if reason in RESTART_REASONS else ExitReason.CRASH
        clean = (clean or restart is ExitReason.RELOAD) and restart not in COUNTED
        done, failed = jobs
        productive = done > failed or (done == 0 and not busy)
        delay = self._next_start(now, clean=clean, productive=productive)
        return Exit(reason, restart, delay, asked)

    def died(self, now: float) -> float:
        """A process with no scoreboard (the embedded gearmand) died: a crash. Returns the
        delay before its restart."""
        return self._next_start(now, clean=False, productive=True)

    def _next_start(self, now: float, clean: bool, productive: bool) -> float:
        uptime = now - self.started_at
        self.pid = 0
        self.code_loaded = False
        if clean or (uptime >= STABLE_AFTER and productive):
            self.failures = 0 if clean else 1
        else:
            self.failures += 1
        delay = 0.0 if clean else backoff_delay(self.failures)
        self.state = ProcessState.BACKOFF if delay else ProcessState.WAITING
        self.next_start = now + delay
        return delay


class Slot(Lifecycle):
    """A place in the plan (``reverse#0``) and its scoreboard index; the processes that fill
    it come and go."""

    def __init__(self, spec: ProcessSpec, index: int) -> None:
        super().__init__()
        self.spec = spec
        self.index = index

    @property
    def key(self) -> str:
        return self.spec.key

    def __repr__(self) -> str:
        return f"Slot({self.key}, index={self.index}, {self.state.value}, pid={self.pid})"
