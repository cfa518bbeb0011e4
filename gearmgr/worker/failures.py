"""A worker process's side of failed jobs (docs/operations.md, "When jobs fail"): it records
each job it fails (an exception, a timeout, a quarantined job) in the SQLite record, and it
screens jobs against the supervisor's quarantine list.

Nothing here runs for a job that succeeds: the loop stores the job in hand in its scoreboard
slot (one C call) and tests the quarantine list's generation (one comparison); the record is
opened on the first failure of the process. A record is written before the job's WORK_FAIL
goes out, so a process that dies right after still leaves it; a record that cannot be written
is logged (rate-limited) and counted as lost, and the job still fails for its client.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from functools import partial

from gearmgr import scoreboard as sb
from gearmgr.errors import exception_text
from gearmgr.failures.quarantine import QuarantineBoard, Quarantined, View
from gearmgr.failures.store import FailedJobs, Failure, RecordSettings, StoreError
from gearmgr.logs import Throttle
from gearmgr.worker.job import Job, failure_reply

log = logging.getLogger("gearmgr.worker")

_REASON_INDEX = {reason: i for i, reason in enumerate(sb.RECORD_REASONS)}


class Failures:
    """``settings`` None: recording off. ``board`` None: no quarantine (a Worker on its own).
    ``scoreboard`` and ``index``: the process's slot, where the counts of records written go
    (``slot``, its writer) and where other slots show a job busy (Scoreboard.busy_with)."""

    def __init__(
        self,
        settings: RecordSettings | None = None,
        board: QuarantineBoard | None = None,
        scoreboard: sb.Scoreboard | None = None,
        index: int = 0,
        slot: sb.SlotWriter | None = None,
    ) -> None:
        self.store = FailedJobs(settings) if settings is not None else None
        unreaped = partial(scoreboard.busy_with, exclude=index) if scoreboard is not None else None
        self.view = View(board, unreaped)
        self._slot = slot
        self._lock = threading.Lock()  # the watchdog thread records too
        self._throttle = Throttle(60.0)
        self.thread_id = threading.get_ident()

    def fail(self, job: Job, exc: BaseException) -> bytes:
        """A job raised (or was quarantined): record it, log it (with its traceback, but for
        SystemExit and a quarantine), and return the reply that fails it for its client."""
        self.exception(job, exc)  # recorded before the WORK_FAIL goes out
        trace = not isinstance(exc, (SystemExit, Quarantined))
        job.log.error("failed: %s", exception_text(exc), exc_info=exc if trace else False)
        return failure_reply(job._handle, exc)

    def exception(self, job: Job, exc: BaseException) -> None:
        """The job raised (or was quarantined): record it."""
        if isinstance(exc, Quarantined):
            self._record(job, "quarantined", f"Quarantined: {exc}", exc.deaths)
        else:
            self._record(job, "exception", _traceback(exc))

    def timeout(self, job: Job, limit: float) -> None:
        """The job overran its timeout (in the watchdog's thread): record it with where the
        job's thread (``thread_id``, set by the loop) was at that moment."""
        error = f"TimeoutError: job exceeded its timeout of {limit:g}s"
        frame = sys._current_frames().get(self.thread_id)
        if frame is not None:
            error += "\n\nWhere the job was:\n" + "".join(traceback.format_stack(frame))
        self._record(job, "timeout", error)

    def cancelled(self, job: Job, limit: float, exc: BaseException) -> None:
        """An async job overran its timeout and was cancelled: record it with where it was
        waiting (the cancellation's traceback)."""
        error = f"TimeoutError: job exceeded its timeout of {limit:g}s"
        self._record(job, "timeout", f"{error}\n\nWhere the job was:\n{_traceback(exc)}")

    def _record(self, job: Job, reason: str, error: str, deaths: int = 0) -> None:
        store = self.store
        if store is None:
            return
        unique = job._unique
        failure = Failure(
            function=job.function,
            handle=job._handle,
            unique=unique if isinstance(unique, bytes) else unique.encode(),
            workload=bytes(job.data),
            reason=reason,
            error=error,
            deaths=deaths,
        )
        with self._lock:
            try:
                store.add(failure)
            except StoreError as exc:
                self._count(sb.RECORD_LOST)
                suffix = self._throttle.allow(time.monotonic())
                if suffix is not None:
                    log.error("failed job %s not recorded: %s%s", job.handle, exc, suffix)
                return
            except Exception as exc:  # a bug must not cost the job its WORK_FAIL
                self._count(sb.RECORD_LOST)
                log.error("failed job %s not recorded: %s", job.handle, exception_text(exc))
                return
        self._count(_REASON_INDEX[reason])

    def _count(self, which: int) -> None:
        slot = self._slot
        if slot is not None:
            slot.words[slot.recorded + which] += 1


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:  # a broken __str__ deep in the chain
        return exception_text(exc)
