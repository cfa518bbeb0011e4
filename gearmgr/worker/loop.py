"""The worker loop: a thin socket loop under the protocol sessions (gearmgr.wire.session).

Runs in a worker process (forked by the supervisor, or on its own through the library API), one
job at a time from any of its servers. The job path of a busy worker is two system calls:
``recv`` of a JOB_ASSIGN_UNIQ (read without asking ``poll``: gearmand answers a GRAB at once)
-> the function -> one ``sendall`` of WORK_COMPLETE and the next GRAB_JOB_UNIQ. No logging
above debug there, limits checked with arithmetic, the scoreboard written with plain stores,
the title and RSS refreshed at most once a second.

An idle worker sleeps in ``poll`` until a server sends something (a NOOP), a signal arrives
(the wakeup pipe: TERM stops gracefully, USR1 reopens the log file) or the next deadline of its
sessions and limits (keep-alive, reconnect, max_lifetime). The supervisor's death is a SIGTERM
(PR_SET_PDEATHSIG, set by gearmgr.worker.child): no polling for it either.
"""

from __future__ import annotations

import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from gearmgr import scoreboard as sb
from gearmgr.failures.quarantine import QuarantineBoard
from gearmgr.failures.store import RecordSettings
from gearmgr.logs import ensure_stdio, set_label
from gearmgr.wire.protocol import work_complete
from gearmgr.wire.session import (
    CONNECTING,
    DOWN,
    GRAB,
    UP,
    Action,
    Connect,
    Drop,
    Run,
    Send,
    ServerSession,
)
from gearmgr.worker.connection import Connection, ConnectionLoop, poll_timeout
from gearmgr.worker.failures import Failures
from gearmgr.worker.job import Job, to_bytes
from gearmgr.worker.limits import Limits, current_rss
from gearmgr.worker.process import ProcessState
from gearmgr.worker.reading import RECV_SIZE, Read, job_reader, serves_in_c, unbuilt
from gearmgr.worker.serving import Serving, unsent
from gearmgr.worker.wakeup import Wakeup
from gearmgr.worker.watchdog import Watchdog

__all__ = ["DOWN", "UP", "Worker", "current_rss"]

log = logging.getLogger("gearmgr.worker")

_monotonic = time.monotonic
_new_job = object.__new__
#: What the job path needs of one function: handler, name, timeout (0.0: none), its counter
#: words in the scoreboard (SlotWriter.counter_words), the store that publishes the job in hand
#: and says BUSY (SlotWriter.job_start) and the words it stores to in C (start_words; None
#: without the C extension).
_Entry = tuple[
    Callable[[Job], Any],
    str,
    float,
    "tuple[int, int, int] | None",
    Callable[[bytes, bytes], None],
    "tuple[Any, ...] | None",
]


class Worker(ConnectionLoop, Serving, ProcessState):
    """Serve ``handlers`` (function name -> callable taking a Job) from every server.

    ``timeouts`` maps function names to a job timeout in seconds: a job that runs longer is
    failed for its client (WORK_WARNING + WORK_FAIL) and the process exits, so that gearmand
    does not run it again elsewhere. ``max_jobs``, ``max_lifetime`` (seconds) and
    ``max_memory`` (bytes) make the process leave between jobs; 0 disables each. ``records``:
    where failed jobs are recorded (None: nowhere); ``quarantine``: the supervisor's list of
    poison jobs (gearmgr.worker.failures).
    """

    def __init__(
        self,
        servers: Iterable[str],
        handlers: dict[str, Callable[[Job], Any]],
        *,
        client_id: str | None = None,
        timeouts: dict[str, float] | None = None,
        max_jobs: int = 0,
        max_lifetime: float = 0.0,
        max_memory: int = 0,
        scoreboard: sb.Scoreboard | None = None,
        slot: int = 0,
        parent_pid: int | None = None,
        title: Callable[[str], None] | None = None,
        counters: list[str] | None = None,
        stop_on_sigint: bool = True,
        records: RecordSettings | None = None,
        quarantine: QuarantineBoard | None = None,
    ) -> None:
        self.handlers = dict(handlers)
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}"
        names = sorted(self.handlers)
        self.conns = [Connection(ServerSession(a, names, self.client_id)) for a in servers]
        self.timeouts = {f: t for f, t in (timeouts or {}).items() if t > 0}
        self.started = _monotonic()
        self.limits = Limits(max_jobs, max_lifetime, max_memory, self.started)
        self._limited = bool(self.limits)
        self.parent_pid = parent_pid
        self.jobs = 0
        self.leaving = sb.REASON_NONE
        self._set_title = title
        self._stop_on_sigint = stop_on_sigint
        self._busy = False
        self._stop = False
        self._child = False  # the child of a fork made by a job's function (worker/serving.py)
        self._reopen = False
        self._refresh_at = 0.0
        self._by_fd: dict[int, Connection] = {}
        self._poll = select.poll()
        ensure_stdio()  # a closed fd 0-2 must not become one of ours
        self._wakeup = Wakeup()
        self._names = ",".join(names)
        # Scoreboard: the slot's words, written with plain stores at indexes computed once.
        if scoreboard is None:  # on its own: a private slot, so the job path has no branches
            scoreboard, slot = sb.Scoreboard(capacity=1), 0
        self._slot = scoreboard.writer(slot, counters if counters is not None else names)
        self._words = scoreboard.words
        slot_writer = self._slot
        self._job_end = slot_writer.job_end
        self._failures = Failures(records, quarantine, scoreboard, slot, slot_writer)
        self._quarantine = self._failures.view
        order = counters if counters is not None else names
        # function -> _Entry: one look-up per job, by name (a session's Run) or by the name's
        # bytes (the fast path)
        self._table: dict[str, _Entry] = {
            name: (
                fn,
                name,
                self.timeouts.get(name, 0.0),
                slot_writer.counter_words(name),
                slot_writer.job_start(order.index(name) if name in order else -1),
                slot_writer.start_words(order.index(name) if name in order else -1),
            )
            for name, fn in self.handlers.items()
        }
        self._by_name = {name.encode(): entry for name, entry in self._table.items()}
        # Timeouts: a watchdog thread fails the overrunning job; sends are then serialised.
        self._watchdog: Watchdog | None = None
        if self.timeouts:
            self._watchdog = Watchdog(
                self.timeouts, self._slot, self._send, lambda: self.jobs, self._failures.timeout
            )
        self._lock = self._watchdog.lock if self._watchdog else None
        # The connection that owes us an answer to GRAB_JOB_UNIQ (JOB_ASSIGN_UNIQ or NO_JOB):
        # gearmand answers a GRAB at once, so the loop reads it with a blocking recv() and skips
        # the poll() call that would only say "readable" (one system call less per job).
        self._due: Connection | None = None
        # Only with one server: with several, every read goes through poll() so that a busy
        # server cannot starve the others (their jobs, their keep-alive answers).
        self._direct = len(self.conns) == 1
        self._flags = bytearray(2)  # read by the C loop: [0] a stop was asked for, [1] forked

    # -- public ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve jobs until stopped or a limit is reached; return the exit code."""
        set_label(f"worker {self._names}")
        self._wakeup.install(self.stop, self._request_reopen, self._stop_on_sigint)
        self._poll.register(self._wakeup.r, select.POLLIN)
        self._slot.start(os.getpid(), self.started, current_rss())
        self._watch_forks()
        self._failures.thread_id = threading.get_ident()
        self.limits.check_baseline()
        self._limited = bool(self.limits)
        if self._watchdog is not None:
            self._watchdog.start()
        now = _monotonic()
        for each in self.conns:
            self._connect(each, now)
        self._title("idle")
        while not self._stop and not self.leaving:
            due = self._due
            if due is not None:
                self._due = None
                if due.session.state == UP:
                    self._receive(due, direct=True)
                    continue
            deadline = self._deadline()
            events = self._poll.poll(poll_timeout(deadline, _monotonic()))
            for fd, _ev in events:
                conn: Connection | None = self._by_fd.get(fd)
                if conn is None:
                    self._woken()
                elif conn.session.state == CONNECTING:
                    self._finish_connect(conn)
                else:
                    self._receive(conn)
                if self.leaving:
                    break
            now = _monotonic()
            if now >= deadline:
                self._tick(now)
        return self._shutdown()

    def stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler)."""
        self._stop = True
        self._flags[0] = 1
        self._wakeup.wake()

    # -- time ------------------------------------------------------------------------------------

    def _deadline(self) -> float:
        """The next moment something is due without a packet: see ServerSession.deadline."""
        deadline = self.limits.deadline or math.inf
        for conn in self.conns:
            deadline = min(deadline, conn.session.deadline())
        return deadline

    def _tick(self, now: float) -> None:
        """Do what is due at ``now``: leave at max_lifetime; reconnects and keep-alives."""
        if self.limits.deadline and now >= self.limits.deadline:
            self.leaving = sb.REASON_MAX_LIFETIME
            return
        for conn in self.conns:
            action = conn.session.tick(now)
            if action is not None:
                self._do(conn, action, now)

    # -- connections (the socket side: gearmgr.worker.connection) --------------------------------

    def _connected(self, conn: Connection, now: float) -> None:
        first = conn.session.connected(now, grab=not (self._stop or self.leaving))
        conn.serve = unbuilt if serves_in_c(conn.sock) else None  # built on first use
        self._count_connected()
        if first is not None:
            self._do(conn, first, now)

    def _do(self, conn: Connection, action: Action, now: float) -> None:
        """Carry out what a session decided."""
        kind = type(action)
        if kind is Send:
            data, answer = action  # type: ignore[misc]
            if self._send_locked(conn, data) and answer and self._direct:
                self._due = conn
        elif kind is Run:
            self._run_job(conn, *action)  # type: ignore[arg-type]
        elif kind is Drop:
            self._close(conn)
        elif kind is Connect:
            self._connect(conn, now)

    # -- packets ---------------------------------------------------------------------------------

    def _receive(self, conn: Connection, direct: bool = False) -> None:
        """Read ``conn`` and act on what came. ``direct``: the read of the answer to our GRAB,
        made without asking poll() first; then the jobs that follow one another are all served
        here, each answer read directly after the reply that asked for it (a busy worker stays
        in this loop: one recv and one sendall per job, nothing else)."""
        session = conn.session
        # Fast path: a read that holds exactly one JOB_ASSIGN_UNIQ of ours with nothing pending
        # in the decoder, which is every read of a busy worker, comes back split (in C for a
        # real socket: worker/reading.py). Anything else (a name to check, several packets, part
        # of one) comes back as bytes and goes through the session.
        if session.decoder.pending:
            read: Read = partial(conn.sock.recv, RECV_SIZE)  # type: ignore[union-attr]
        elif (
            direct
            and self._busy
            and conn.serve is not None
            and not (self._stop or self.leaving or self._quarantine.keys)
        ):
            self._serve(conn)  # jobs in a row, in C
            return
        else:
            read = job_reader(conn.sock, self._by_name)
        while True:
            try:
                got = read()
            except BlockingIOError:  # a direct read ran into SO_RCVTIMEO: poll() takes over
                return
            except OSError as exc:
                self._lost(conn, _monotonic(), f"receive failed: {exc}")
                return
            if isinstance(got, bytes):
                if not got:
                    self._lost(conn, _monotonic(), "connection closed by the server")
                    return
                break
            handle_b, entry, unique_b, payload = got  # (a call with *got costs more)
            if not self._job(conn, handle_b, entry, unique_b, payload):
                return
            if (
                (direct or not self._direct)
                and conn.serve is not None
                and not (self._stop or self.leaving or self._quarantine.keys)
            ):
                self._serve(conn)  # busy now: the jobs that follow, in C (with several
                return  # servers, while the others have nothing)
            if not direct:  # one read per call: the next answer is due (read it directly)
                if self._direct:
                    self._due = conn
                return
        self._decode(conn, session, got, direct)

    def _decode(self, conn: Connection, session: ServerSession, data: bytes, direct: bool) -> None:
        """What the fast path left: decode ``data`` and act on each packet."""
        now = _monotonic()
        packets = session.decode(data, now)
        if isinstance(packets, Drop):
            self._close(conn)
            return
        if direct and not packets:  # part of a packet: the rest is on its way
            self._due = conn
            return
        for packet in packets:
            if session.state != UP:  # lost on the way (a send failed, an ERROR): drop the rest
                return
            action = session.packet(packet, now, not (self._stop or self.leaving))
            if action is not None:
                self._do(conn, action, now)
        if self._busy and all(c.session.sleeping or c.session.state != UP for c in self.conns):
            self._turn_idle()

    def _run_job(
        self, conn: Connection, handle_b: bytes, function: str, unique_b: bytes, data: bytes
    ) -> None:
        """A job the session decided to Run (its names checked)."""
        if self._job(conn, handle_b, self._table[function], unique_b, data) and self._direct:
            self._due = conn

    def _job(
        self,
        conn: Connection,
        handle_b: bytes,
        entry: _Entry,
        unique_b: bytes,
        data: bytes,
        ran: tuple[Job, bytes | BaseException, float] | None = None,
    ) -> bool:
        """Run one job whose names were checked, count it, and send its reply and the next
        GRAB in one write. True when that GRAB went out: its answer may be read directly.

        This is the job path (docs/benchmarks.md, "hot path"): plain stores, bound names, no
        call that is not needed. Hooks go at the marked points: job start (the slot says busy,
        the Job exists), failure (:meth:`_failed`), job end (the counters). ``ran``: the job
        already ran in C (its Job, its result or what it raised, its start), the rest is done
        here."""
        handler, function, timeout, counters, job_start, _ = entry
        session = conn.session
        outcome: Any  # what the function returned (made bytes), or what it raised
        if ran is not None:  # it ran in C (worker/serving.py)
            job, outcome, start = ran
            failed = isinstance(outcome, BaseException)
        else:
            start = _monotonic()
            session.last_rx = start
            session.echo_deadline = 0.0
            if not self._busy:
                self._busy = True
                self._title("busy")
            # -- job start: the slot holds the job in hand (for the supervisor, should this job
            # kill the process) and says BUSY (one call; in C when built) --
            job_start(handle_b, unique_b)
            # The Job with its slots filled in place: Job.__init__'s checks are for callers that
            # may pass str; these fields come checked from the fast path or the session.
            job = _new_job(Job)
            job._handle = handle_b
            job.function = function
            job._unique = unique_b
            job.data = data
            job._send = conn.send_job  # type: ignore[assignment]
            job._log = None
            quarantine = self._quarantine
            if quarantine.keys or quarantine.gen[0] != quarantine.seen:  # a plain load, usually
                handler = quarantine.screen(function, handle_b, unique_b, handler)
            if timeout:  # then there is a watchdog: it fails the job at start + timeout
                self._watchdog.arm(conn, handle_b, start, timeout, function, job)  # type: ignore[union-attr]
            failed = False
            try:
                outcome = handler(job)
                if outcome is None:
                    outcome = b""
                elif type(outcome) is not bytes:
                    outcome = to_bytes(outcome)
            except BaseException as exc:  # the job fails, the process lives on
                failed, outcome = True, exc
        if self._child:  # its function forked and came back here in the child
            self._leave_child(job, outcome)
        result = self._failed(job, outcome) if failed else outcome  # -- failure --
        if timeout and ran is None:  # in time: from here on the watchdog leaves the job alone
            self._watchdog.disarm()  # type: ignore[union-attr]
        end = _monotonic()
        # -- job end: counted in the slot, which then says IDLE (one call; in C when built) --
        self.jobs = jobs = self.jobs + 1
        self._job_end(counters, jobs, failed, end - start)
        if self._limited:
            reason, rss = self.limits.check(jobs, end)
            if rss:
                self._words[self._slot.rss] = rss
            if reason:
                self.leaving = reason
        if end >= self._refresh_at:
            self._refresh(end)
        grab = not (self._stop or self.leaving)
        then = GRAB if grab else b""
        # The reply and the next GRAB in one write, the result copied once.
        # (In C for a real socket: conn.reply, worker/reading.py.)
        sock, reply = conn.sock, None if failed else conn.reply
        if self._lock is None and sock is not None and session.state == UP:
            try:
                if reply is not None:
                    reply(handle_b, result, then)
                else:
                    sock.sendall(result + then if failed else work_complete(handle_b, result, then))
                return grab
            except OSError as exc:
                self._lost(conn, _monotonic(), f"send failed: {exc}")
        elif self._send_locked(
            conn, result + then if failed else work_complete(handle_b, result, then)
        ):
            return grab
        unsent(handle_b, conn.address)
        return False

    def _failed(self, job: Job, exc: BaseException) -> bytes:
        """A job raised: recorded and logged, and the reply that fails it (Failures.fail). A
        job that called sys.exit() or raised KeyboardInterrupt makes the process leave."""
        reply = self._failures.fail(job, exc)
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            self._stop = True  # the job asked the process to exit: it does, and says why
            self.leaving = sb.REASON_JOB_EXIT
            self._slot.set(self._slot.job_exit, sb.job_exit_word(exc))
        return reply
