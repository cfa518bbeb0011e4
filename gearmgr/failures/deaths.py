"""Which jobs killed worker processes: the supervisor's counts.

Pure: driven by ``now``, no system call. A job is known by its function and its key (its unique
id, else its handle: gearmand hands a re-queued job out again under both). The table keeps the
``limit`` jobs that died most recently and forgets a job ``forget_after`` seconds after its last
death. Every job counted is published to the workers (quarantine.py) with its deaths and its
function's ``poison_after``: a worker handed it adds the deaths not reaped yet and refuses it
once they reach ``poison_after``.
"""

from __future__ import annotations

from collections import OrderedDict

from gearmgr.failures.quarantine import Entry

FORGET_AFTER = 86400.0  # seconds
LIMIT = 4096  # jobs whose deaths are counted at once (the quarantine board's capacity)


class DeathCounts:
    def __init__(self, limit: int = LIMIT, forget_after: float = FORGET_AFTER) -> None:
        self.limit = limit
        self.forget_after = forget_after
        # (function, key) -> (deaths, poison_after, time of the last death)
        self._jobs: OrderedDict[tuple[str, bytes], tuple[int, int, float]] = OrderedDict()

    def died(self, function: str, key: bytes, poison_after: int, now: float) -> int:
        """A process died running this job: its deaths so far. ``poison_after`` 0: never
        quarantined (counted for the log only)."""
        self.expire(now)
        ident = (function, key)
        deaths = self._jobs.pop(ident, (0, 0, now))[0] + 1
        self._jobs[ident] = (deaths, poison_after, now)
        while len(self._jobs) > self.limit:
            self._jobs.popitem(last=False)
        return deaths

    def expire(self, now: float) -> bool:
        """Forget the jobs whose last death is too old; True if any was."""
        horizon, jobs, changed = now - self.forget_after, self._jobs, False
        while jobs and next(iter(jobs.values()))[2] < horizon:
            jobs.popitem(last=False)
            changed = True
        return changed

    def entries(self) -> list[Entry]:
        """What the workers get, oldest first: (function, key, deaths, poison_after), the jobs
        of functions that quarantine only."""
        return [(f, k, d, limit) for (f, k), (d, limit, _) in self._jobs.items() if limit]

    def quarantined(self) -> int:
        """Jobs whose deaths reached their poison_after."""
        return sum(1 for d, limit, _ in self._jobs.values() if limit and d >= limit)

    def deaths(self, function: str, key: bytes) -> int:
        return self._jobs.get((function, key), (0, 0, 0.0))[0]
