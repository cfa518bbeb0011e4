"""One job server connection of the asyncio worker loop (:mod:`gearmgr.worker.aio`): an
:class:`asyncio.Protocol` beside its sans-IO session, with the bytes to write this loop turn;
:class:`Deadlines`, the earliest job deadline in the scoreboard (the supervisor's backstop);
:func:`failure`, the reply failing a job that raised; :func:`resumed`, a coroutine started by
hand going on in a task; and :func:`blocking`, an async function as the sync loop runs it."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from gearmgr.scoreboard import SlotWriter
from gearmgr.wire.places import PlacesSession
from gearmgr.wire.protocol import PacketType, encode
from gearmgr.wire.session import UP
from gearmgr.worker.job import Job

_monotonic = time.monotonic
log = logging.getLogger("gearmgr.worker")
WARNING_LIMIT = 65536  # characters of an exception's message sent to the client


class Owner:
    """What a :class:`Link` calls back: the loop that owns it."""

    def _received(self, link: Link, data: bytes) -> None:
        raise NotImplementedError

    def _count_connected(self) -> None:
        raise NotImplementedError

    def _flush_soon(self) -> None:
        raise NotImplementedError


class Link(asyncio.Protocol):
    """One job server connection: its session, its transport and the bytes to write this
    loop turn. ``generation`` counts connections, so a reply never goes to a later one."""

    def __init__(self, worker: Owner, session: PlacesSession) -> None:
        self.worker = worker
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.closing = False  # closed by this side (a Drop, the process leaving)
        self.out: list[bytes] = []
        self.generation = 0
        self.changed = asyncio.Event()  # the connection went down: its keeper looks again

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.closing = False
        self.generation += 1
        self.out = []
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self.worker._received(self, data)

    def pause_writing(self) -> None:
        """The server does not read what we write (its buffer is over asyncio's high-water
        mark): stop reading it too, so what it sends cannot make the buffer grow."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.out = []
        if self.session.state == UP and not self.closing:  # closed by the server
            why = f"connection lost: {exc}" if exc else "connection closed by the server"
            self.session.lost(_monotonic(), why)
        self.worker._count_connected()
        self.changed.set()

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes, generation: int = 0) -> None:
        """Queue ``data`` for this loop turn's write (dropped if the connection it was meant
        for, ``generation``, is gone)."""
        if self.transport is None or (generation and generation != self.generation):
            return
        if not self.out:
            self.worker._flush_soon()
        self.out.append(data)

    def reply(self, data: bytes, generation: int, handle: str) -> None:
        """Queue a job's reply; say so when the connection it came on is gone."""
        self.write(data, generation)
        if generation != self.generation or self.transport is None:
            log.warning(
                "the result of job %s could not be sent to %s; gearmand re-queues a job"
                " whose worker disconnected",
                handle,
                self.session.address,
            )

    def sender(self, generation: int) -> Callable[[bytes], None]:
        """What a Job's status/send_data/warning call: queue on the loop, from any thread."""

        def send(data: bytes) -> None:
            if threading.get_ident() == self.thread:
                self.write(data, generation)
            else:
                self.loop.call_soon_threadsafe(self.write, data, generation)

        return send

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
        self.out = []

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


def blocking(handler: Callable[[Job], Any]) -> Callable[[Job], Any]:
    """An ``async def`` handler as the sync loop runs it (the shared ``count`` processes): one
    job at a time, on an event loop kept for the process."""
    loop: list[asyncio.AbstractEventLoop] = []

    def run(job: Job) -> Any:
        if not loop:
            loop.append(asyncio.new_event_loop())
        return loop[0].run_until_complete(handler(job))

    return run


class Deadlines:
    """The job deadlines of the jobs in hand; the scoreboard holds the earliest, which the
    supervisor enforces 5 s late when the event loop is blocked and cannot cancel a job."""

    def __init__(self, slot: SlotWriter) -> None:
        self._slot = slot
        self._by_job: dict[int, float] = {}

    def add(self, key: int, deadline: float) -> None:
        self._by_job[key] = deadline
        slot = self._slot
        current = slot.floats[slot.deadline]
        if not current or deadline < current:
            slot.floats[slot.deadline] = deadline

    def remove(self, key: int) -> None:
        if self._by_job.pop(key, None) is not None:
            slot = self._slot
            slot.floats[slot.deadline] = min(self._by_job.values(), default=0.0)


def install_signals(
    loop: asyncio.AbstractEventLoop,
    stop: Callable[[int], None],
    reopen: Callable[[], None],
    stop_on_sigint: bool,
) -> None:
    """TERM (and INT on its own) stop gracefully, USR1 reopens the log file (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop.add_signal_handler(signal.SIGTERM, stop, 0)
    loop.add_signal_handler(signal.SIGUSR1, reopen)
    if stop_on_sigint:
        loop.add_signal_handler(signal.SIGINT, stop, 0)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def timeout_reply(handle: bytes, limit: float) -> bytes:
    """The reply failing a job that overran its timeout."""
    text = f"TimeoutError: job exceeded its timeout of {limit:g}s".encode()
    return encode(PacketType.WORK_WARNING, handle, text) + encode(PacketType.WORK_FAIL, handle)


class _Resume:
    """Awaiting this goes on with a coroutine that was started by hand and stopped at
    ``first`` (what it yielded: a future to wait for): what ``yield from`` would do."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation, thrown in by the task
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


async def resumed(coro: Coroutine[Any, Any, None], first: Any) -> None:
    await _Resume(coro, first)
