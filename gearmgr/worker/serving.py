"""The worker loop's busy path in C: jobs that follow one another on one connection, run by
``gearmgr/_serve.c`` without going back to the Python loop for each.

Where it applies (the Worker decides: the C extension built, the process already busy, nothing
quarantined, no stop asked for), a read of the answer to our GRAB goes to ``serve``, which
reads, runs, counts and answers job after job exactly as :meth:`Worker._job` would (arming and
disarming the timeout watchdog, reading the RSS for max_memory), and comes back with what the
Python loop does better: a packet that is not a job of ours, a job that failed, a limit, a stop
or the once-a-second refresh that is due; with several servers, also as soon as another
connection has something to read. This module finishes what it hands back; the job counts it
made are read back from the scoreboard slot, which it wrote as it went.

It also keeps a job's function that calls os.fork() from serving in the child: the child of a
fork in a running Worker is marked (``_flags[1]``, read by C, and ``_child``), and a function
that returns or raises there makes the child leave at once (os._exit), before the job is counted
or answered: the parent's slot, connections and watchdog are not the child's to touch.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import weakref
from select import POLLIN, POLLOUT
from typing import Any, NoReturn

from gearmgr import scoreboard as sb
from gearmgr.failures.quarantine import View
from gearmgr.wire.session import CONNECTING, ServerSession
from gearmgr.worker.connection import Connection
from gearmgr.worker.job import Job, to_bytes
from gearmgr.worker.limits import Limits
from gearmgr.worker.reading import job_server, unbuilt
from gearmgr.worker.wakeup import Wakeup
from gearmgr.worker.watchdog import Watchdog

log = logging.getLogger("gearmgr.worker")

_monotonic = time.monotonic


def unsent(handle: bytes, address: str) -> None:
    """The warning for a job whose result could not be sent."""
    log.warning(
        "the result of job %s could not be sent to %s; gearmand re-queues a job whose worker "
        "disconnected (unless it restarted without a persistent queue)",
        handle.decode("ascii", "replace"),
        address,
    )


_running: weakref.WeakSet[Serving] = weakref.WeakSet()  # the Workers run() in this process


def _forked() -> None:
    """os.fork()'s child (os.register_at_fork): the Workers it inherited serve no more."""
    for worker in _running:
        worker._child = True
        worker._flags[1] = 1  # the C loop hands the job back before its disarm, its count


os.register_at_fork(after_in_child=_forked)


def exit_code(exc: SystemExit) -> int:
    """The status of a process that raised ``exc``, as the interpreter makes it."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


class Serving:
    """The part of the Worker that hands busy stretches to C. The Worker provides the
    attributes below and the methods it calls."""

    _child: bool

    jobs: int
    limits: Limits
    _by_name: dict[bytes, Any]
    conns: list[Connection]
    _direct: bool
    _due: Connection | None
    _flags: bytearray
    _quarantine: View
    _refresh_at: float
    _slot: sb.SlotWriter
    _wakeup: Wakeup
    _watchdog: Watchdog | None
    _words: memoryview

    def _serve_context(self, conn: Connection) -> tuple[Any, ...]:
        """What gearmgr/_serve.c needs of this process and ``conn`` (its ctx argument)."""
        return (
            Job,
            conn.send_job,
            self._slot.end_words(),
            self._flags,
            self._quarantine.gen,
            self.limits.max_jobs,
            float(self.limits.deadline),
            to_bytes,
            conn,
            *(
                (None, None, None)
                if self._watchdog is None
                else (self._watchdog.arm, self._watchdog.disarm, self._watchdog.lock)
            ),
            self.limits.max_memory,
            self._slot.rss,
        )

    def _serve(self, conn: Connection) -> None:
        """Serve the jobs that follow on ``conn`` in C, then finish what it hands back."""
        session = conn.session
        watch: tuple[tuple[int, int], ...] = ()
        until = math.inf
        if not self._direct:  # several servers: back to poll() once another one has something
            watch = (
                *(
                    (c.sock.fileno(), POLLOUT if c.session.state == CONNECTING else POLLIN)
                    for c in self.conns
                    if c is not conn and c.sock is not None
                ),
                (self._wakeup.r, POLLIN),
            )
            until = self._deadline()
        serve = conn.serve
        if serve is unbuilt:  # the first busy stretch on this connection
            serve = conn.serve = job_server(conn.sock, self._by_name, self._serve_context(conn))
            if serve is None:  # cannot be (checked at connect); poll() reads it then
                return
        try:
            got = serve(  # type: ignore[misc]
                self.jobs, self._refresh_at, self._quarantine.seen, watch, until
            )
        except BlockingIOError:  # the answer is late (SO_RCVTIMEO): poll() takes over
            return
        except OSError as exc:
            self._lost(conn, _monotonic(), f"receive failed: {exc}")
            return
        finally:
            self._served(session)
        if got is None:  # another server has something, or a deadline came: poll() does it
            return
        if type(got) is bytes:  # not a job of ours: the session decodes it
            if got:
                self._decode(conn, session, got, self._direct)
            else:
                self._lost(conn, _monotonic(), "connection closed by the server")
            return
        if len(got) == 4:  # a job it did not start (a stop, the quarantine, a timeout)
            sent = self._job(conn, *got)
        elif len(got) == 5:  # a job that ran: failed, or a limit, a stop or the refresh is due
            handle_b, entry, job, outcome, start = got
            sent = self._job(conn, handle_b, entry, b"", b"", (job, outcome, start))
        else:  # a job counted whose answer could not be sent
            handle_b, error = got
            self._lost(conn, _monotonic(), f"send failed: {error}")
            unsent(handle_b, conn.address)
            return
        if sent and self._direct:
            self._due = conn

    def _watch_forks(self) -> None:
        """This Worker runs: the child of a fork from now on is marked (see _forked)."""
        _running.add(self)

    def _leave_child(self, job: Job, outcome: bytes | BaseException | None) -> NoReturn:
        """A job's function forked, and returned or raised in the child: the child leaves at
        once (the job is the parent's to count and answer), with the status that SystemExit
        asked for, 1 if it raised anything else, else 0."""
        code = 0
        if isinstance(outcome, SystemExit):
            code = exit_code(outcome)
        elif isinstance(outcome, BaseException):
            code = 1
            log.error(
                "job %s: its function forked and raised in the child (pid %d)",
                job.handle,
                os.getpid(),
                exc_info=outcome,
            )
        log.debug("job %s: the child of its function's fork leaves (%d)", job.handle, code)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(code)

    def _served(self, session: ServerSession) -> None:
        """The jobs C counted (the slot's done word) become the process's; the server was
        heard from."""
        done = self._words[self._slot.done]
        if done != self.jobs:
            self.jobs = done
            session.last_rx = _monotonic()
            session.echo_deadline = 0.0

    # -- provided by the Worker ----------------------------------------------------------------

    def _deadline(self) -> float:
        raise NotImplementedError

    def _lost(self, conn: Connection, now: float, why: str) -> None:
        raise NotImplementedError

    def _decode(self, conn: Connection, session: ServerSession, data: bytes, direct: bool) -> None:
        raise NotImplementedError

    def _job(
        self,
        conn: Connection,
        handle_b: bytes,
        entry: Any,
        unique_b: bytes,
        data: bytes,
        ran: tuple[Job, bytes | BaseException, float] | None = None,
    ) -> bool:
        raise NotImplementedError
