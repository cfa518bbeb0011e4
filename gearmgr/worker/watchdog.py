"""Job timeouts: a thread that fails a job which overran its timeout, then ends the process.

gearmand's own CAN_DO_TIMEOUT re-queues an expired job (so it runs twice) and clamps the value
to 1 s; gearmgr registers plain CAN_DO and enforces the timeout here instead: the client gets
WORK_WARNING "TimeoutError: ..." and WORK_FAIL, and the process, whose job code may still be
running, exits. If the job holds the GIL so this thread never runs, the supervisor kills the
process a little later (the job is then re-queued).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gearmgr import scoreboard as sb
from gearmgr.errors import ExitCode
from gearmgr.wire.protocol import PacketType, encode

if TYPE_CHECKING:
    from gearmgr.worker.connection import Connection
    from gearmgr.worker.job import Job

log = logging.getLogger("gearmgr.worker")

#: The job being timed: its connection, handle, deadline (monotonic), timeout, function, Job.
Current = tuple["Connection", bytes, float, float, str, "Job"]


class Watchdog:
    """Shares ``lock`` with the loop: the loop clears ``current`` under it when the job ends,
    and sends under it (a job's own threads may send too)."""

    def __init__(
        self,
        timeouts: dict[str, float],
        writer: sb.SlotWriter,
        send: Callable[[Connection, bytes], bool],
        jobs: Callable[[], int],
        record: Callable[[Job, float], None] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.current: Current | None = None
        self._nap = min(timeouts.values())
        self._writer = writer
        self._send = send
        self._jobs = jobs
        self._record = record

    def arm(
        self, conn: Connection, handle: bytes, start: float, timeout: float, function: str, job: Job
    ) -> None:
        """A job with a timeout starts: fail it at ``start + timeout`` (the slot shows when)."""
        w = self._writer
        w.floats[w.deadline] = start + timeout
        self.current = (conn, handle, start + timeout, timeout, function, job)

    def disarm(self) -> None:
        """The job ended in time: from here on the watchdog leaves it alone."""
        with self.lock:
            self.current = None
            self._writer.floats[self._writer.deadline] = 0.0

    def start(self) -> None:
        threading.Thread(target=self._run, name="gearmgr-timeout", daemon=True).start()

    def _run(self) -> None:
        # Idle, it naps the shortest timeout: a job that starts meanwhile is looked at before
        # its own deadline whatever its function.
        while True:
            current = self.current
            now = time.monotonic()
            if current is None or now < current[2]:
                time.sleep(self._nap if current is None else max(0.001, current[2] - now))
                continue
            with self.lock:
                if self.current is current:
                    self._expire(current)

    def _expire(self, current: Current) -> None:
        conn, handle, _, limit, function, job = current
        if self._record is not None:  # the failed-job record, before the WORK_FAIL
            self._record(job, limit)
        text = f"TimeoutError: job exceeded its timeout of {limit:g}s".encode()
        fail = encode(PacketType.WORK_WARNING, handle, text) + encode(PacketType.WORK_FAIL, handle)
        self._send(conn, fail)
        log.error(
            "job %s overran its timeout; failed it and exiting", handle.decode(errors="replace")
        )
        w = self._writer
        w.set(w.exit_reason, sb.REASON_TIMEOUT)
        w.job_done(function, self._jobs() + 1, True, limit)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(ExitCode.TIMEOUT)
