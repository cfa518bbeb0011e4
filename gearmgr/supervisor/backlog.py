"""Reading the backlog at the job servers without ever blocking the supervisor's loop.

One kept-open, non-blocking admin connection per job server, in the supervisor's selector:
``status`` is asked about once a second (:data:`INTERVAL`) and the answer is parsed by the
wire layer's admin codec (:class:`gearmgr.wire.text.AdminDecoder`, ``parse_status``). Connect,
send and receive happen only when the selector says they can; an answer that overstays
:data:`TIMEOUT`, a refused connection, a closed one or an answer that does not parse closes
the connection, forgets that server's reading and retries after a growing delay (1 s doubling
to 30 s), so a slow or dead server delays nothing else. Numeric addresses are used as they
are; host names through the job-server check's resolver (``ServerProbe.resolved``).

While no job waits anywhere, an answer does not wake the loop: it is read by the next turn,
the one that asks again a second later (so an idle supervisor turns no more often for it); once
jobs wait, answers are read as they arrive. So are the answers to a question asked while
``pressure()`` says a backlog is likely (an elastic pool has every process busy): a backlog is
then seen a second sooner, and an idle supervisor still wakes once a second.

Each answer vouches that its server is up (``answered(address, now)``): the job-server check
(``probe.py``) need not connect to a server the reader hears from.

``waiting(name)`` is the jobs of ``name`` queued and not running, summed over the servers
with a fresh reading; None when no server has one (the pools then hold their size).
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gearmgr.wire.packets import ProtocolError
from gearmgr.wire.text import AdminDecoder, FunctionStatus, parse_status

log = logging.getLogger("gearmgr.supervisor")

INTERVAL = 1.0  # seconds between two `status` questions to one server
TIMEOUT = 2.0  # longest wait for a connection or an answer
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
STALE = 3 * INTERVAL + TIMEOUT  # a reading older than this is not used
MAX_ANSWER = 1 << 20  # bytes of one `status` answer
SLACK = 0.05  # a question due this soon goes out with the loop's turn now: no turn of its own

AddressInfo = tuple[int, tuple[object, ...]]


@dataclass(eq=False)
class _Server:
    address: str
    sock: socket.socket | None = None
    connected: bool = False
    asking: bool = False
    decoder: AdminDecoder = field(default_factory=lambda: AdminDecoder(expect_list=True))
    size: int = 0
    deadline: float = 0.0  # of the connection or of the answer under way
    next_ask: float = 0.0  # when to connect or ask next
    asked_at: float = 0.0
    eager: bool = False  # jobs were waiting at the last reading: answers wake the loop
    watched: bool = False  # the socket is in the selector
    failures: int = 0
    rows: dict[str, FunctionStatus] = field(default_factory=dict)
    read_at: float = -STALE


class BacklogReader:
    """``resolve(address)`` gives a server's socket family and address, or None while a host
    name is unresolved; ``clock`` is read when the selector reports a socket."""

    def __init__(
        self,
        servers: tuple[str, ...],
        resolve: Callable[[str], AddressInfo | None],
        clock: Callable[[], float] = time.monotonic,
        *,
        pressure: Callable[[], bool] = lambda: False,
        answered: Callable[[str, float], None] = lambda address, now: None,
    ) -> None:
        self.resolve = resolve
        self.clock = clock
        self.pressure = pressure
        self.answered = answered
        self._selector: selectors.BaseSelector | None = None
        self._servers: dict[str, _Server] = {}
        self._by_fd: dict[int, _Server] = {}
        self.configure(servers)

    def configure(self, servers: tuple[str, ...]) -> None:
        """A new server list (a reload): drop the servers that went, add the new ones."""
        for address in list(self._servers):
            if address not in servers:
                self._close(self._servers.pop(address))
        for address in servers:
            self._servers.setdefault(address, _Server(address))

    def attach(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector

    # -- what the pools read -------------------------------------------------------------------

    def _fresh(self, now: float) -> list[_Server]:
        return [s for s in self._servers.values() if now - s.read_at <= STALE]

    def waiting(self, name: str, now: float) -> int | None:
        fresh = self._fresh(now)
        if not fresh:
            return None
        return sum(max(0, r.total - r.running) for s in fresh if (r := s.rows.get(name)))

    def counts(self, name: str, now: float) -> tuple[int, int]:
        """(queued, running) of ``name`` at all servers with a fresh reading; queued counts
        the jobs waiting, not those running."""
        queued = running = 0
        for server in self._fresh(now):
            row = server.rows.get(name)
            if row is not None:
                queued += max(0, row.total - row.running)
                running += row.running
        return queued, running

    # -- the loop's side -----------------------------------------------------------------------

    def next_wake(self) -> float:
        wake = float("inf")
        for server in self._servers.values():
            if server.asking and not server.watched:  # read on the tick that asks again
                wake = min(wake, server.next_ask, server.deadline)
            else:
                wake = min(wake, server.deadline if server.asking else server.next_ask)
        return wake

    def tick(self, now: float) -> None:
        """Read the answers nobody woke up for; close what overstayed; connect or ask where
        it is due."""
        for server in self._servers.values():
            if server.asking and not server.watched:
                self._receive(server, now)
                if server.asking and now + SLACK >= server.next_ask:  # a slow answer: wake for it
                    self._watch(server, selectors.EVENT_READ)
            if server.sock is not None and (server.asking or not server.connected):
                if now >= server.deadline:
                    self._fail(server, now, "no answer")
                continue
            if now + SLACK < server.next_ask:
                continue
            if server.sock is None:
                self._connect(server, now)
            else:
                self._ask(server, now)

    def ready(self, fileobj: object) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()  # type: ignore[attr-defined]
        server = self._by_fd.get(fd)
        if server is None or server.sock is None:
            return
        now = self.clock()
        if not server.connected:
            try:
                err = server.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError as exc:
                err = exc.errno or errno.EIO
            if err:
                self._fail(server, now, errno.errorcode.get(err, str(err)))
                return
            server.connected = True
            self._ask(server, now)
            return
        self._receive(server, now)

    def _receive(self, server: _Server, now: float) -> None:
        """Read what the server sent, without waiting; a whole answer becomes the reading."""
        while server.sock is not None:
            try:
                chunk = server.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(server, now, exc.strerror or str(exc))
                return
            if not chunk:
                self._fail(server, now, "connection closed")
                return
            if not server.asking:  # nothing was asked: a server talking out of turn
                self._fail(server, now, "unexpected data")
                return
            server.size += len(chunk)
            try:
                lines = server.decoder.feed(chunk)
                rows = parse_status(lines) if lines is not None else None
            except ProtocolError as exc:
                self._fail(server, now, str(exc)[:200])
                return
            if rows is not None:
                self._answered(server, rows, now)
                return
            if server.size > MAX_ANSWER:
                self._fail(server, now, f"answer longer than {MAX_ANSWER} bytes")
                return

    def _answered(self, server: _Server, rows: list[FunctionStatus], now: float) -> None:
        server.rows = {row.function: row for row in rows}
        server.read_at = now
        server.asking = False
        server.failures = 0
        # Eager (jobs waiting): the next question a second after this answer. Lazy: a second
        # after the last question, when the loop's own tick reads the answer and asks again.
        server.next_ask = now + INTERVAL if server.eager else server.asked_at + INTERVAL
        server.eager = any(row.total > row.running for row in rows)
        self.answered(server.address, now)

    def close(self) -> None:
        for server in self._servers.values():
            self._close(server)

    def close_in_child(self) -> None:
        for server in self._servers.values():
            if server.sock is not None:
                server.sock.close()

    # -- one server ------------------------------------------------------------------------------

    def _connect(self, server: _Server, now: float) -> None:
        info = self.resolve(server.address)
        if info is None:
            server.next_ask = now + INTERVAL
            return
        family, addr = info
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of fds: retried later, nothing spins
            self._fail(server, now, exc.strerror or str(exc))
            return
        sock.setblocking(False)
        rc = sock.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(server, now, errno.errorcode.get(rc, str(rc)))
            return
        server.sock = sock
        server.connected = False
        server.deadline = now + TIMEOUT
        self._by_fd[sock.fileno()] = server
        self._watch(server, selectors.EVENT_WRITE)

    def _ask(self, server: _Server, now: float) -> None:
        assert server.sock is not None
        try:
            sent = server.sock.send(b"status\n")
        except OSError as exc:
            self._fail(server, now, exc.strerror or str(exc))
            return
        if sent != len(b"status\n"):
            self._fail(server, now, "send buffer full")
            return
        server.asking = True
        server.asked_at = now
        server.next_ask = now + INTERVAL
        server.decoder = AdminDecoder(expect_list=True)
        server.size = 0
        server.deadline = now + TIMEOUT
        eager = server.eager or self.pressure()
        self._watch(server, selectors.EVENT_READ if eager else None)

    def _watch(self, server: _Server, events: int | None) -> None:
        """Put the socket in the selector for ``events``, or take it out (None): while no job
        waits, an answer is read by the next tick instead of waking the loop for it."""
        if self._selector is None or server.sock is None:
            return
        if events is None:
            if server.watched:
                self._selector.unregister(server.sock)
                server.watched = False
        elif server.watched:
            self._selector.modify(server.sock, events, self)
        else:
            self._selector.register(server.sock, events, self)
            server.watched = True

    def _fail(self, server: _Server, now: float, why: str) -> None:
        self._close(server)
        server.rows = {}
        server.read_at = -STALE
        server.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (server.failures - 1))
        server.next_ask = now + delay
        log.debug("backlog of %s: %s; next try in %gs", server.address, why, delay)

    def _close(self, server: _Server) -> None:
        sock, server.sock = server.sock, None
        server.connected = server.asking = False
        if sock is None:
            return
        self._by_fd.pop(sock.fileno(), None)
        if self._selector is not None and server.watched:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
        server.watched = False
        sock.close()
