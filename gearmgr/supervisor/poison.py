"""Deaths and poison jobs, in the supervisor (docs/operations.md, "When jobs fail").

When a process dies while its scoreboard slot says it was running a job, the job in hand (the
slot's handle and unique id, stored by the worker before each job) is the one that killed it:
the log names its function, unique id and handle, and its deaths are counted (failures/deaths.py).
A death counts unless the supervisor had asked the process to stop (a stop deadline, QUIT); a
timeout kill counts, and so does a death the supervisor did not ask for (a signal, the OOM
killer, os._exit). After ``poison_after`` deaths the job goes on the quarantine list shared with
the workers (failures/quarantine.py): the next process handed it fails and records it.

The record itself is written by the workers; the supervisor creates its file at start-up (after
the switch of user, so that the workers can write it) and adds up the records each process wrote.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from gearmgr import scoreboard as sb
from gearmgr.config import Config
from gearmgr.failures.deaths import DeathCounts
from gearmgr.failures.quarantine import QuarantineBoard, job_key
from gearmgr.failures.store import FailedJobs, RecordSettings, StoreError
from gearmgr.logs import clip
from gearmgr.supervisor.lifecycle import ExitReason, ProcessState, Slot
from gearmgr.supervisor.snapshot import FailureStats
from gearmgr.words import plural

log = logging.getLogger("gearmgr.supervisor")

_KINDS = (*sb.RECORD_REASONS, "lost")


def record_settings(config: Config) -> RecordSettings | None:
    """The record's place and bounds from the config; None when ``failed_jobs: none``."""
    if config.failed_jobs is None:
        return None
    return RecordSettings(str(config.failed_jobs), config.failed_jobs_keep, config.failed_jobs_max)


class PoisonWatch:
    def __init__(self, scoreboard: sb.Scoreboard, board: QuarantineBoard) -> None:
        self.scoreboard = scoreboard
        self.board = board
        self.counts = DeathCounts(limit=board.capacity)
        self.deaths: Counter[str] = Counter()  # by function
        self.quarantined: Counter[str] = Counter()  # by function
        self.recorded = [0] * len(_KINDS)  # records written by processes that are gone

    def open_record(self, config: Config) -> None:
        """Create the record's file (start-up, after the switch of user, as the workers will
        write it). One that cannot be opened is logged as an error, not fatal: the jobs still
        run and fail for their clients, each unrecorded failure is logged and counted as lost
        (an upgrade must not stop a supervisor whose config folder its user cannot write)."""
        settings = record_settings(config)
        if settings is None:
            log.info("failed jobs are not recorded (failed_jobs: none)")
            return
        store = FailedJobs(settings)
        try:
            store.prune()
        except StoreError as exc:
            log.error(
                "%s: failed jobs will not be recorded until it can be written (by the user"
                " the workers run as; its folder too, for SQLite's -wal and -shm files), or"
                " failed_jobs names another file",
                exc,
            )
        finally:
            store.close()

    def gone(
        self,
        slot: Slot,
        functions: list[str],
        busy: bool,
        poison_after: Callable[[str], int],
        now: float,
    ) -> None:
        """The process of ``slot`` is gone (reaped, before its slot is cleared): add up its
        records and, if it died running a job, count the death against that job."""
        for i, n in enumerate(self.scoreboard.recorded(slot.index)):
            self.recorded[i] += n
        hand = self.scoreboard.in_hand(slot.index) if busy else None
        if hand is None:
            self.scoreboard.drop_in_hand(slot.index)
            if self.counts.expire(now):
                self._publish(slot.index)
            return
        # The death moves from the slot (where workers count it until it is reaped) to the
        # counts, in one write of the shared list: no worker sees it twice or not at all.
        asked = slot.state is ProcessState.STOPPING and slot.stop_reason is not ExitReason.TIMEOUT
        if asked:  # a stop deadline, QUIT: the supervisor's doing, not the job's
            self._publish(slot.index)
            return
        number, handle, unique = hand
        function = functions[number] if number < len(functions) else "?"
        limit = poison_after(function)
        deaths = self.counts.died(function, job_key(handle, unique), limit, now)
        self._publish(slot.index)
        self.deaths[function] += 1
        what = f"job of {function} (unique {_show(unique)}, handle {_show(handle)})"
        log.warning(
            "process %d (%s) died running a %s: %s%s",
            slot.pid,
            slot.key,
            what,
            plural(deaths, "death"),
            f" of {limit} before quarantine" if limit else "",
        )
        if limit and deaths == limit:
            self.quarantined[function] += 1
            log.error(
                "%s quarantined: it killed %s; the next process handed it fails it (WORK_FAIL)"
                " and records it",
                what,
                plural(deaths, "worker process", "worker processes"),
            )

    def _publish(self, index: int) -> None:
        """Rewrite the shared list, the slot's job dropped in the same write."""
        self.board.begin()
        try:
            self.scoreboard.drop_in_hand(index)
            self.board.write(self.counts.entries())
        finally:
            self.board.end()

    def stats(self, live: Iterable[int], database: str | None) -> FailureStats:
        """The counters status and metrics show; ``live``: the scoreboard indexes in use."""
        recorded = list(self.recorded)
        for index in live:
            for i, n in enumerate(self.scoreboard.recorded(index)):
                recorded[i] += n
        return FailureStats(
            recorded=dict(zip(_KINDS, recorded, strict=True)),
            deaths=dict(self.deaths),
            quarantined=dict(self.quarantined),
            in_quarantine=self.counts.quarantined(),
            database=database,
        )


def _show(value: bytes) -> str:
    return repr(clip(value)) if value else "none"
