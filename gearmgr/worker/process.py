"""The worker process's own state beside its jobs: the process title and the RSS in the slot
(refreshed when the process turns idle and at most once a second while busy), the log file
reopened after SIGUSR1, and the way out (the slot says why, RESET_ABILITIES to each server)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gearmgr import scoreboard as sb
from gearmgr.errors import ExitCode
from gearmgr.logs import ensure_stdio, reopen_log_file
from gearmgr.wire.session import RESET_ABILITIES, UP
from gearmgr.worker.connection import Connection
from gearmgr.worker.limits import Limits, current_rss, leave
from gearmgr.worker.wakeup import Wakeup

_monotonic = time.monotonic

#: The process title's job count and the scoreboard's RSS are refreshed at most this often
#: while jobs run (and whenever the process turns idle).
REFRESH_INTERVAL = 1.0


class ProcessState:
    """The part of the Worker that keeps the process's title, slot and log file; the Worker
    provides the attributes below."""

    conns: list[Connection]
    jobs: int
    leaving: int
    limits: Limits
    parent_pid: int | None
    _busy: bool
    _names: str
    _refresh_at: float
    _reopen: bool
    _set_title: Callable[[str], None] | None
    _slot: sb.SlotWriter
    _wakeup: Wakeup

    def _send(self, conn: Connection, data: bytes) -> bool:
        raise NotImplementedError

    def _refresh(self, now: float) -> None:
        """The title's job count and the scoreboard's RSS; a log reopen asked for by SIGUSR1."""
        self._refresh_at = now + REFRESH_INTERVAL
        if not self.limits.max_memory:  # else the limit check writes it after each job
            self._slot.set(self._slot.rss, current_rss())
        self._title("busy" if self._busy else "idle")
        if self._reopen:
            self._reopen = False
            ensure_stdio()  # before the log file is opened again
            reopen_log_file()

    def _turn_idle(self) -> None:
        self._busy = False
        ensure_stdio()  # a job may have closed fd 0-2: give them /dev/null while nothing runs
        self._refresh(_monotonic())

    def _shutdown(self) -> int:
        leave(self._slot, self.leaving, self.parent_pid, self.jobs)
        for conn in self.conns:
            if conn.session.state == UP:
                self._send(conn, RESET_ABILITIES)
            if conn.sock is not None:
                conn.sock.close()
        return ExitCode.OK

    def _request_reopen(self) -> None:
        self._reopen = True

    def _woken(self) -> None:
        """The wakeup pipe: a signal's handler has run (stop, log reopen)."""
        self._wakeup.drain()
        if self._reopen:
            self._refresh(_monotonic())

    def _title(self, state: str) -> None:
        if self._set_title is not None:
            self._set_title(f"gearmgr: worker {self._names} [jobs={self.jobs} {state}]")
