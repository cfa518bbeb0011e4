"""Asking the job servers whether they answer, without ever blocking the supervisor's loop.

Every ``interval`` seconds, each server gets a non-blocking connection in the supervisor's
selector; it is up if it answers the admin ``version`` command within ``timeout``. A server
that accepts and never answers, or a thousand of them, costs the loop nothing but a few
``select`` events: connect, send and receive are each done only when the selector says they
can be, and a query that overstays its deadline is closed by :meth:`ServerProbe.tick`.
A server that another connection heard from (the backlog reader's ``status`` answers, see
:meth:`ServerProbe.vouch`) is up without a check of its own until ``interval`` has passed
since: an idle supervisor then wakes once a second for the backlog and for nothing else.

Host names are resolved in a throwaway fork that writes the addresses to a pipe (a resolver
can block for seconds, and the supervisor must not run threads: a lock held by another thread
at fork time stays held in every worker). Numeric addresses need no resolving. Names are
resolved again every RESOLVE_EVERY seconds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from gearmgr.supervisor.spawner import fork
from gearmgr.units import parse_address

log = logging.getLogger("gearmgr.supervisor")

RESOLVE_EVERY = 60.0
RESOLVE_TIMEOUT = 10.0
MAX_ANSWER = 256


@dataclass(eq=False)
class _Query:
    address: str
    sock: socket.socket
    deadline: float
    sent: bool = False
    got: bytes = b""


@dataclass(eq=False)
class _Resolving:
    pid: int
    fd: int
    deadline: float
    buf: bytes = field(default=b"")


def _numeric(host: str, port: int) -> tuple[int, tuple[object, ...]] | None:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[
            0
        ]
    except (OSError, UnicodeError):
        return None
    return info[0], info[4]


class ServerProbe:
    """``report(address, up)`` is called with each answer (or its absence)."""

    def __init__(
        self,
        servers: tuple[str, ...],
        report: Callable[[str, bool], None],
        *,
        interval: float = 5.0,
        timeout: float = 1.0,
        in_child: Callable[[], None] | None = None,
    ) -> None:
        self.report = report
        self.interval = interval
        self.timeout = timeout
        self._in_child = in_child
        self._selector: selectors.BaseSelector | None = None
        self._queries: dict[int, _Query] = {}
        self._next = 0.0
        self._resolving: _Resolving | None = None
        self._resolved_at = -RESOLVE_EVERY
        self._addrs: dict[str, tuple[int, tuple[object, ...]] | None] = {}
        self._vouched: dict[str, float] = {}  # when another connection last heard a server
        self.servers: tuple[str, ...] = ()
        self._names: list[str] = []
        self.configure(servers)

    def configure(self, servers: tuple[str, ...]) -> None:
        """A new server list (a reload): forget names resolved for the old one."""
        if servers == self.servers:
            return
        self.servers = servers
        self._addrs = {}
        self._vouched = {}
        for address in servers:
            host, port = parse_address(address)
            self._addrs[address] = _numeric(host, port)
        self._names = [a for a, info in self._addrs.items() if info is None]
        self._resolved_at = -RESOLVE_EVERY
        self._next = 0.0

    def attach(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector

    def resolved(self, address: str) -> tuple[int, tuple[object, ...]] | None:
        """The socket family and address of ``address``, None while a name is unresolved."""
        return self._addrs.get(address)

    def vouch(self, address: str, now: float) -> None:
        """``address`` answered another connection at ``now``: it is up, and needs no check of
        its own before ``interval`` has passed."""
        if address in self._addrs:
            self._vouched[address] = now
            self.report(address, True)

    def _unheard(self, address: str, now: float) -> bool:
        return now - self._vouched.get(address, -self.interval) >= self.interval

    def _round_due(self) -> float:
        """When the next round has work: a name to resolve, or a server nobody vouched for."""
        due = float("inf")
        if self._names and self._resolving is None:
            due = max(self._next, self._resolved_at + RESOLVE_EVERY)
        for address, info in self._addrs.items():
            if info is not None:
                heard = self._vouched.get(address, -self.interval)
                due = min(due, max(self._next, heard + self.interval))
        return due

    def next_wake(self) -> float:
        wake = self._round_due()
        for query in self._queries.values():
            wake = min(wake, query.deadline)
        if self._resolving is not None:
            wake = min(wake, self._resolving.deadline)
        return wake

    def child_pids(self) -> set[int]:
        """The resolver fork, while it runs."""
        return {self._resolving.pid} if self._resolving is not None else set()

    def tick(self, now: float) -> None:
        """Close the queries past their deadline; start a round when one is due."""
        for fd, query in list(self._queries.items()):
            if now >= query.deadline:
                self._finish(fd, query, False)
        if self._resolving is not None and now >= self._resolving.deadline:
            self._end_resolving(kill=True)
        if now < self._round_due():
            return
        self._next = now + self.interval
        if self._names and self._resolving is None and now - self._resolved_at >= RESOLVE_EVERY:
            self._resolve(self._names, now)
        busy = {q.address for q in self._queries.values()}
        for address, info in self._addrs.items():
            if address not in busy and info is not None and self._unheard(address, now):
                self._query(address, info, now)

    def ready(self, fileobj: object) -> None:
        """The selector reports one of our fds."""
        if self._resolving is not None and fileobj == self._resolving.fd:
            self._read_resolved()
            return
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()  # type: ignore[attr-defined]
        query = self._queries.get(fd)
        if query is None:
            return
        try:
            if not query.sent:
                err = query.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._finish(fd, query, False)
                    return
                query.sock.send(b"version\n")
                query.sent = True
                self._modify(query.sock, selectors.EVENT_READ)
                return
            chunk = query.sock.recv(MAX_ANSWER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._finish(fd, query, False)
            return
        query.got += chunk
        if not chunk or b"\n" in query.got or len(query.got) >= MAX_ANSWER:
            self._finish(fd, query, query.got.startswith(b"OK"))

    def close(self) -> None:
        for fd, query in list(self._queries.items()):
            self._unregister(query.sock)
            query.sock.close()
            del self._queries[fd]
        self._end_resolving(kill=True)

    def close_in_child(self) -> None:
        for query in self._queries.values():
            query.sock.close()
        if self._resolving is not None:
            os.close(self._resolving.fd)

    # -- queries --------------------------------------------------------------------------------

    def _query(self, address: str, info: tuple[int, tuple[object, ...]], now: float) -> None:
        family, addr = info
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of fds: this round is skipped, nothing spins
            log.debug("server check of %s skipped: %s", address, exc)
            return
        sock.setblocking(False)
        rc = sock.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS):
            sock.close()
            self.report(address, False)
            return
        query = _Query(address, sock, now + self.timeout)
        self._queries[sock.fileno()] = query
        if self._selector is not None:
            self._selector.register(sock, selectors.EVENT_WRITE, self)

    def _finish(self, fd: int, query: _Query, up: bool) -> None:
        del self._queries[fd]
        self._unregister(query.sock)
        query.sock.close()
        self.report(query.address, up)

    def _modify(self, sock: socket.socket, events: int) -> None:
        if self._selector is not None:
            self._selector.modify(sock, events, self)

    def _unregister(self, fileobj: socket.socket | int) -> None:
        if self._selector is not None:
            try:
                self._selector.unregister(fileobj)
            except (KeyError, ValueError):
                pass

    # -- resolving names in a throwaway fork ----------------------------------------------------

    def _resolve(self, names: list[str], now: float) -> None:
        self._resolved_at = now
        try:
            r, w = os.pipe()
        except OSError:
            return

        def run() -> int:
            os.close(r)
            out: dict[str, object] = {}
            for address in names:
                host, port = parse_address(address)
                try:
                    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
                    out[address] = [int(info[0]), list(info[4])]
                except (OSError, UnicodeError):
                    out[address] = None
            os.write(w, json.dumps(out).encode()[:60000])
            return 0

        try:
            pid = fork(run, what="the job servers' resolver", in_child=self._in_child)
        except OSError:
            os.close(r)
            os.close(w)
            return
        os.close(w)
        os.set_blocking(r, False)
        self._resolving = _Resolving(pid, r, now + RESOLVE_TIMEOUT)
        if self._selector is not None:
            self._selector.register(r, selectors.EVENT_READ, self)

    def _read_resolved(self) -> None:
        job = self._resolving
        assert job is not None
        try:
            chunk = os.read(job.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        job.buf += chunk
        if chunk and len(job.buf) < 65536:
            return
        try:
            answer = json.loads(job.buf or b"{}")
        except ValueError:
            answer = {}
        self._end_resolving(kill=False)
        for address, info in answer.items() if isinstance(answer, dict) else ():
            if address not in self._addrs:
                continue
            if info:
                self._addrs[address] = (info[0], tuple(info[1]))
            else:
                self._addrs[address] = None
                self.report(address, False)
        self._next = 0.0  # query the servers just resolved

    def _end_resolving(self, kill: bool) -> None:
        job, self._resolving = self._resolving, None
        if job is None:
            return
        self._unregister(job.fd)
        os.close(job.fd)
        if kill:  # overstayed: it has not exited, so its pid is still its own
            try:
                os.kill(job.pid, 9)  # reaped by the supervisor's loop like any child
            except ProcessLookupError:
                pass
