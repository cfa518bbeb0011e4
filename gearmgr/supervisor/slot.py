"""One process slot's life: waiting, running, stopping, backoff. Driven by ``now``.

A slot is a place in the plan (``reverse#0``); the processes that fill it come and go. The
slot decides when the next one may start: at once after a clean recycle or a crash that came
after a stable run, and with an exponentially growing, capped, jittered delay after quick
deaths in a row, so a broken worker file or a crash loop never storms and never gives up for
good. Nothing here forks, sleeps or reads the clock: the supervisor passes ``now`` in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gearmgr.supervisor.plan import ProcessSpec

WAITING = "waiting"  # may start at next_start
RUNNING = "running"
STOPPING = "stopping"  # asked to stop; SIGKILL at kill_at
BACKOFF = "backoff"  # died quickly; waits until next_start

STABLE_AFTER = 10.0  # seconds of uptime after which a death no longer counts as quick
BACKOFF_BASE = 0.5
BACKOFF_MAX = 60.0


def backoff_delay(failures: int, jitter: float = 0.1) -> float:
    """Delay before restart number ``failures`` of a crash loop: 0 for the first quick death,
    then 0.5 s, 1 s, 2 s ... capped at 60 s, each +/- ``jitter``."""
    if failures <= 1:
        return 0.0
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 2))
    return delay * random.uniform(1 - jitter, 1 + jitter)


@dataclass
class Slot:
    spec: ProcessSpec
    index: int  # scoreboard slot
    state: str = WAITING
    pid: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    kill_at: float = 0.0
    failures: int = 0
    stop_reason: str = ""  # why the supervisor stopped it: reload, timeout, stop, retire

    @property
    def key(self) -> str:
        return self.spec.key

    def due(self, now: float) -> bool:
        return self.state in (WAITING, BACKOFF) and now >= self.next_start

    def started(self, pid: int, now: float) -> None:
        self.state = RUNNING
        self.pid = pid
        self.started_at = now
        self.stop_reason = ""

    def stopping(self, now: float, grace: float, reason: str) -> None:
        """The supervisor sent TERM: the process has ``grace`` seconds to finish."""
        if self.state == STOPPING:
            return
        self.state = STOPPING
        self.kill_at = now + grace
        self.stop_reason = reason

    def exited(self, now: float, clean: bool, productive: bool = True) -> float:
        """The process is gone. ``clean`` is true for a recycle (max_jobs, max_lifetime) or a
        stop the supervisor asked for. Otherwise (a crash, a job killed for its timeout, a
        memory recycle) the death counts toward the backoff unless the process had a stable run:
        up for STABLE_AFTER seconds and ``productive`` (it completed a job, or never had one).
        A process killed by its first job, however long that job ran, is a quick death: a job
        that kills every process that takes it is retried ever more slowly, never in a loop.
        Returns the delay before the next start.
        """
        uptime = now - self.started_at
        self.pid = 0
        if clean or (uptime >= STABLE_AFTER and productive):
            self.failures = 0 if clean else 1
        else:
            self.failures += 1
        delay = 0.0 if clean else backoff_delay(self.failures)
        self.state = BACKOFF if delay else WAITING
        self.next_start = now + delay
        return delay
