"""The asyncio worker loop: one process of an ``async def`` function runs up to ``concurrency``
jobs at once on one event loop. The protocol is the sans-IO session's
(:mod:`gearmgr.wire.places` over :mod:`gearmgr.wire.session`): this module moves bytes and runs
coroutines, one connection per server (:mod:`gearmgr.worker.aio_link`). A job is started at
once and goes on in a task if it waits; replies and the GRABs for the places now free are
written once per connection and loop turn, several in one write.

* **Places**: a GRAB goes out only for a free place (:class:`~gearmgr.wire.places.Places`),
  so the server's ``running`` count is the jobs really running here.
* **Timeouts**: a job past its function's ``timeout`` is failed for its client at once and its
  task cancelled; its place stays taken until the task has ended, the other jobs go on. A job
  that blocks the event loop cannot be cancelled: the supervisor kills the process 5 s past the
  earliest deadline (the scoreboard holds it) and gearmand re-queues what it held.
* **Stopping**: TERM and the limits stop the grabbing, let every job in hand finish (up to
  ``graceful_timeout``), send RESET_ABILITIES and exit. A killed process loses no job.
* An exception fails its own job (WORK_WARNING + WORK_FAIL, recorded as the sync loop's are;
  ``sys.exit()`` also makes the process leave once the others end). No poison-job quarantine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from gearmgr import scoreboard as sb
from gearmgr.errors import ExitCode
from gearmgr.failures.store import RecordSettings
from gearmgr.logs import ensure_stdio, reopen_log_file, set_label
from gearmgr.wire.places import Places, PlacesSession
from gearmgr.wire.protocol import work_complete
from gearmgr.wire.session import RESET_ABILITIES, UP, Connect, Drop, Run, Send
from gearmgr.worker.aio_link import (
    Deadlines,
    Link,
    Owner,
    blocking,
    install_signals,
    resumed,
    timeout_reply,
)
from gearmgr.worker.failures import Failures
from gearmgr.worker.job import Job, to_bytes
from gearmgr.worker.limits import Limits, current_rss, leave

__all__ = ["AsyncWorker", "blocking"]

log = logging.getLogger("gearmgr.worker")

_monotonic = time.monotonic
REFRESH_INTERVAL = 1.0  # the title and the RSS, at most this often while jobs run
CONNECT_TIMEOUT = 10.0


class AsyncWorker(Owner):
    """Serve ``handlers`` (name -> ``async def`` callable taking a Job) from every server, up
    to ``concurrency`` jobs at once. The other arguments are the sync ``Worker``'s."""

    def __init__(
        self,
        servers: Iterable[str],
        handlers: dict[str, Callable[[Job], Coroutine[Any, Any, Any]]],
        *,
        concurrency: int = 1,
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
    ) -> None:
        self.handlers = dict(handlers)
        self.concurrency = max(1, concurrency)
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}"
        self.servers = list(servers)
        self.timeouts = {f: t for f, t in (timeouts or {}).items() if t > 0}
        self.started = _monotonic()
        self.limits = Limits(max_jobs, max_lifetime, max_memory, self.started)
        self.parent_pid = parent_pid
        self.jobs = 0
        self.leaving = sb.REASON_NONE
        self._stopping = False
        self._set_title = title
        self._stop_on_sigint = stop_on_sigint
        self._names = ",".join(sorted(self.handlers))
        if scoreboard is None:
            scoreboard, slot = sb.Scoreboard(capacity=1), 0
        self._slot = scoreboard.writer(slot, counters if counters is not None else sorted(handlers))
        self._words = scoreboard.words
        self._table = {
            name: (fn, self.timeouts.get(name, 0.0)) for name, fn in self.handlers.items()
        }
        self._deadlines = Deadlines(self._slot)
        self._failures = Failures(records, None, scoreboard, slot, self._slot)  # no quarantine
        self._refresh_at = 0.0
        self._shown_idle = True  # the title says idle: the next job refreshes it at once
        self._flushing = False
        self.links: list[Link] = []
        self.places: Places | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._done: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self) -> int:
        """Serve jobs until stopped or a limit is reached, finish those in hand; the exit code."""
        set_label(f"worker {self._names}")
        ensure_stdio()
        return asyncio.run(self._main())

    def stop(self) -> None:
        """Ask for a graceful stop: no more jobs, the jobs in hand finish (safe from any
        thread once the loop runs)."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._begin_stop, sb.REASON_NONE)
        else:
            self._begin_stop(sb.REASON_NONE)

    # -- the loop -----------------------------------------------------------------------------

    async def _main(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._done = asyncio.Event()
        names = sorted(self.handlers)
        sessions = [
            PlacesSession(a, names, self.client_id, max_window=self.concurrency)
            for a in self.servers
        ]
        self.links = [Link(self, s) for s in sessions]
        self.places = Places(self.concurrency, sessions)
        install_signals(loop, self._begin_stop, self._reopen, self._stop_on_sigint)
        slot = self._slot
        slot.start(os.getpid(), self.started, current_rss())
        self._words[slot.in_hand] = 0
        self._words[slot.places] = self.concurrency
        self.limits.check_baseline()
        if self.limits.deadline:
            loop.call_at(
                loop.time() + self.limits.deadline - _monotonic(),
                self._begin_stop,
                sb.REASON_MAX_LIFETIME,
            )
        self._title()
        keepers = [loop.create_task(self._keep(link)) for link in self.links]
        if self._stopping:  # a stop asked for before the loop ran
            self._check_done()
        await self._done.wait()
        for keeper in keepers:  # (their loops also end on _done: a cancel can be lost in 3.11)
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        return self._shutdown()

    async def _keep(self, link: Link) -> None:
        """Keep one server's connection: connect when the backoff says so, keep-alive."""
        session = link.session
        loop = asyncio.get_running_loop()
        assert self._done is not None
        while not self._done.is_set():
            now = _monotonic()
            action = session.tick(now)
            if type(action) is Connect:
                await self._connect(link, loop)
            elif type(action) is Send:
                link.write(action.data)
            elif type(action) is Drop:
                link.close()
            wait = session.deadline() - _monotonic()
            if wait > 0:
                link.changed.clear()
                try:
                    async with asyncio.timeout(None if wait == math.inf else wait):
                        await link.changed.wait()
                except TimeoutError:
                    pass

    async def _connect(self, link: Link, loop: asyncio.AbstractEventLoop) -> None:
        session = link.session
        if self._stopping:
            session.lost(_monotonic(), "stopping")
            return
        session.connecting()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda: link, session.host, session.port)
        except (OSError, TimeoutError) as exc:
            session.lost(_monotonic(), str(exc) or type(exc).__name__)
            return
        first = session.connected(_monotonic(), grab=not self._stopping)
        self._count_connected()
        if first is not None:
            link.write(first.data)
        self._fill(link)

    # -- packets ------------------------------------------------------------------------------

    def _received(self, link: Link, data: bytes) -> None:
        session = link.session
        for action in session.feed(data, _monotonic(), grab=not self._stopping):
            kind = type(action)
            if kind is Run:
                self._start(link, action)  # type: ignore[arg-type]
            elif kind is Send:
                link.write(action.data)  # type: ignore[union-attr]
            elif kind is Drop:
                link.close()
                break
        self._fill(link)
        if self._stopping:
            self._check_done()
        elif not self._shown_idle and self._idle():
            self._refresh(_monotonic())

    def _idle(self) -> bool:
        """No job in hand and every connection asleep (or down): the title says idle."""
        assert self.places is not None
        return not self.places.running and all(
            s.sleeping or s.state != UP for s in self.places.sessions
        )

    def _fill(self, first: Link | None = None) -> None:
        """Grab for every free place (none while stopping)."""
        if self._stopping or self.places is None:
            return
        for session, grabs in self.places.fill(first.session if first else None):
            for link in self.links:
                if link.session is session:
                    link.write(grabs)

    def _flush_soon(self) -> None:
        if not self._flushing:
            self._flushing = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        for link in self.links:
            if link.out:
                link.flush()

    # -- jobs ---------------------------------------------------------------------------------

    def _start(self, link: Link, run: Run) -> None:
        assert self.places is not None and self._loop is not None
        self.places.take()
        running = self.places.running
        self._words[self._slot.in_hand] = running
        if running == 1:
            self._words[self._slot.state] = sb.BUSY
            if self._shown_idle:
                self._refresh(_monotonic())
        answered = [False]  # the timeout's reply went out already
        job = self._job(link, link.generation, *run, answered)
        # Started at once, in this callback: a job that does not wait (or not yet) costs no
        # task; one that waits goes on in a task from where it stopped (aio_link.resumed).
        try:
            first = job.send(None)
        except StopIteration:
            return
        task = self._loop.create_task(resumed(job, first))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        timeout = self._table[run.function][1]
        if timeout:
            self._time(task, link, run.handle, timeout, answered)

    def _time(
        self, task: asyncio.Task[None], link: Link, handle_b: bytes, limit: float, answered: list
    ) -> None:
        """Arm the timeout of a job that waits (one that ended at once cannot overrun)."""
        assert self._loop is not None
        timer = self._loop.call_later(
            limit, self._expire, task, link, link.generation, handle_b, limit, answered
        )
        self._deadlines.add(id(task), _monotonic() + limit)

        def disarm(_: object) -> None:
            timer.cancel()
            self._deadlines.remove(id(task))

        task.add_done_callback(disarm)

    async def _job(
        self,
        link: Link,
        generation: int,
        handle_b: bytes,
        function: str,
        unique_b: bytes,
        data: bytes,
        answered: list[bool],
    ) -> None:
        handler, timeout = self._table[function]
        job = Job(handle_b, function, unique_b, data, link.sender(generation))
        start = _monotonic()
        failed = False
        try:
            result = await handler(job)
            reply = work_complete(handle_b, result if type(result) is bytes else to_bytes(result))
        except asyncio.CancelledError as exc:
            failed = True
            if answered[0]:  # its timeout: failed for the client already, recorded now
                self._failures.cancelled(job, timeout, exc)
            reply = b"" if answered[0] else self._failure(job, exc)
        except BaseException as exc:  # the job fails, the process and its other jobs live on
            failed = True
            reply = b"" if answered[0] else self._failure(job, exc)
        failed = failed or answered[0]
        if not answered[0]:
            link.reply(reply, generation, job.handle)
        self._finished(link, function, failed, _monotonic() - start)

    def _finished(self, link: Link, function: str, failed: bool, duration: float) -> None:
        """A job's task has ended (its reply is queued): free its place, count it, check the
        limits, grab again."""
        assert self.places is not None
        self.places.release()
        self.jobs = jobs = self.jobs + 1
        slot, words = self._slot, self._words
        slot.job_done(function, jobs, failed, duration)  # the state word is left alone
        running = self.places.running
        words[slot.in_hand] = running
        if not running:
            words[slot.state] = sb.IDLE
        now = _monotonic()
        if self.limits:
            reason, rss = self.limits.check(jobs, now)
            if rss:
                words[slot.rss] = rss
            if reason:
                self._begin_stop(reason)
        if now >= self._refresh_at:
            self._refresh(now)
        if self._stopping:
            self._check_done()
        else:
            self._fill(link)

    def _expire(
        self,
        task: asyncio.Task[None],
        link: Link,
        generation: int,
        handle_b: bytes,
        limit: float,
        answered: list[bool],
    ) -> None:
        """A job overran its timeout: fail it for its client now and cancel its task."""
        answered[0] = True
        link.write(timeout_reply(handle_b, limit), generation)
        log.error("job %s overran its timeout of %gs; cancelled it", handle_b.decode(), limit)
        self._deadlines.remove(id(task))
        task.cancel()

    def _failure(self, job: Job, exc: BaseException) -> bytes:
        """Log a failed job; the reply that fails it. A job that called sys.exit() (or raised
        KeyboardInterrupt) makes the process leave once the others end."""
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            self._slot.set(self._slot.job_exit, sb.job_exit_word(exc))
            self._begin_stop(sb.REASON_JOB_EXIT)
        return self._failures.fail(job, exc)  # recorded before the WORK_FAIL goes out

    # -- stopping -----------------------------------------------------------------------------

    def _begin_stop(self, reason: int) -> None:
        self.leaving = self.leaving or reason
        if not self._stopping:
            self._stopping = True
            self._title()
        self._check_done()

    def _check_done(self) -> None:
        """Stopping: done with no job in hand and no GRAB unanswered (or no server up)."""
        places = self.places
        if self._done is None or places is None or places.running:
            return
        if not places.in_flight() or not any(s.state == UP for s in places.sessions):
            self._done.set()
            for link in self.links:
                link.changed.set()  # wake the keepers: they end

    def _shutdown(self) -> int:
        leave(self._slot, self.leaving, self.parent_pid, self.jobs)
        for link in self.links:
            if link.session.state == UP and link.transport is not None:
                link.out.append(RESET_ABILITIES)
                link.flush()
                link.close()
        return ExitCode.OK

    # -- process state ------------------------------------------------------------------------

    def _count_connected(self) -> None:
        """A connection came or went (a stopping process waits for no GRAB of a lost one)."""
        self._slot.set(self._slot.servers, sum(1 for k in self.links if k.session.state == UP))
        if self._stopping:
            self._check_done()

    def _refresh(self, now: float) -> None:
        self._refresh_at = now + REFRESH_INTERVAL
        if not self.limits.max_memory:
            self._slot.set(self._slot.rss, current_rss())
        self._title()

    def _reopen(self) -> None:
        ensure_stdio()
        reopen_log_file()

    def _title(self) -> None:
        running = self.places.running if self.places else 0
        self._shown_idle = not running
        if self._set_title is None:
            return
        state = "stopping" if self._stopping else ("busy" if running else "idle")
        self._set_title(
            f"gearmgr: worker {self._names} [jobs={self.jobs} {state} {running}/{self.concurrency}]"
        )
