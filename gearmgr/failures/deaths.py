"""Which jobs killed worker processes, and which are quarantined: the supervisor's counts.

Pure: driven by ``now``, no system call. A job is known by its function and its key (its unique
id, else its handle: gearmand hands a re-queued job out again under both). Both tables are
bounded: the counts keep the ``limit`` most recent jobs and forget a job ``forget_after``
seconds after its last death; the quarantine keeps the ``capacity`` newest entries, each for
``forget_after`` seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from gearmgr.failures.quarantine import CAPACITY, Entry

FORGET_AFTER = 86400.0  # seconds
LIMIT = 10_000  # jobs whose deaths are counted at once


@dataclass(frozen=True)
class Death:
    """What one death meant: the job's deaths so far, and whether it is now quarantined
    (True only at the death that crossed ``poison_after``)."""

    deaths: int
    quarantined: bool


class DeathCounts:
    def __init__(
        self, limit: int = LIMIT, capacity: int = CAPACITY, forget_after: float = FORGET_AFTER
    ) -> None:
        self.limit = limit
        self.capacity = capacity
        self.forget_after = forget_after
        self._counts: OrderedDict[tuple[str, bytes], tuple[int, float]] = OrderedDict()
        self._quarantine: OrderedDict[tuple[str, bytes], tuple[int, float]] = OrderedDict()

    def died(self, function: str, key: bytes, poison_after: int, now: float) -> Death:
        """A process died running this job; ``poison_after`` 0: never quarantine."""
        self.expire(now)
        ident = (function, key)
        deaths = self._counts.pop(ident, (0, now))[0] + 1
        self._counts[ident] = (deaths, now)
        while len(self._counts) > self.limit:
            self._counts.popitem(last=False)
        if not poison_after or deaths < poison_after or ident in self._quarantine:
            if ident in self._quarantine:
                self._quarantine[ident] = (deaths, self._quarantine[ident][1])
            return Death(deaths, False)
        self._quarantine[ident] = (deaths, now)
        while len(self._quarantine) > self.capacity:
            self._quarantine.popitem(last=False)
        return Death(deaths, True)

    def expire(self, now: float) -> bool:
        """Forget what is too old; True if the quarantine changed."""
        horizon = now - self.forget_after
        counts, quarantine = self._counts, self._quarantine
        while counts and next(iter(counts.values()))[1] < horizon:
            counts.popitem(last=False)
        changed = False
        while quarantine and next(iter(quarantine.values()))[1] < horizon:
            quarantine.popitem(last=False)
            changed = True
        return changed

    def quarantined(self) -> list[Entry]:
        """The quarantine, oldest first: (function, key, deaths)."""
        return [(f, k, deaths) for (f, k), (deaths, _) in self._quarantine.items()]

    def deaths(self, function: str, key: bytes) -> int:
        return self._counts.get((function, key), (0, 0.0))[0]
