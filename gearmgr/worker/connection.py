"""One job server connection as the worker loop holds it: a socket beside its protocol session.

The socket is opened non-blocking (the connect completes in the loop's ``poll``), then made
blocking with bounded waits: sends time out after SEND_TIMEOUT, and a read of the answer to a
GRAB that does not come within DIRECT_READ_TIMEOUT hands over to ``poll``.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from gearmgr.logs import ensure_stdio
from gearmgr.scoreboard import SlotWriter
from gearmgr.wire.session import UP, ServerSession
from gearmgr.worker.reading import Serve, complete_sender

_monotonic = time.monotonic

SEND_TIMEOUT = 30.0
#: A read that expects gearmand's answer to GRAB_JOB_UNIQ blocks at most this long before the
#: loop falls back to ``poll`` (so a stop request or a deadline is never held up for long).
DIRECT_READ_TIMEOUT = 0.5


class Connection:
    """A socket (None while down) and the :class:`ServerSession` that decides what it says."""

    __slots__ = ("reply", "send_job", "serve", "session", "sock")

    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self.sock: socket.socket | None = None
        #: what a Job's status/data/warning calls write to (bound per connection)
        self.send_job: Callable[[bytes], None] | None = None
        #: the job path's write on a connected real socket, in C (reading.complete_sender):
        #: ``reply(handle, result, then)`` sends WORK_COMPLETE and ``then``; None: sendall
        self.reply: Callable[[bytes, bytes, bytes], None] | None = None
        #: the loop of a busy worker in C on it (reading.job_server; set by the Worker), or None
        self.serve: Serve | None = None

    @property
    def address(self) -> str:
        return self.session.address

    @property
    def state(self) -> str:
        return self.session.state


def open_socket(host: str, port: int) -> tuple[socket.socket, int]:
    """A non-blocking socket connecting to ``host:port`` and the error of the connect
    (0: connected or under way). Never on fds 0-2, which a job may have closed. Raises OSError
    when the name does not resolve or no socket can be made."""
    ensure_stdio()  # a job closed fd 1? then a socket there would receive its print()s
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a name the IDNA codec refuses (a label over 63 characters)
        raise OSError(f"not a valid host name: {exc}") from None
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    if sock.fileno() <= 2:  # a job's thread closed it since: move the socket up
        high = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
        sock.close()
        sock = socket.socket(family, stype, proto, fileno=high)
        ensure_stdio()
    sock.setblocking(False)
    rc = sock.connect_ex(addr)
    return sock, 0 if rc == errno.EINPROGRESS else rc


def connect_error(sock: socket.socket) -> int:
    """The outcome of a non-blocking connect once the socket is writable (0: connected)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def configure(sock: socket.socket) -> None:
    """A connected socket as the loop uses it: blocking with bounded waits, no Nagle delay,
    TCP keep-alive."""
    sock.setblocking(True)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sec = int(SEND_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, 0))
    usec = int(DIRECT_READ_TIMEOUT * 1e6)
    sock.setsockopt(
        socket.SOL_SOCKET,
        socket.SO_RCVTIMEO,
        struct.pack("ll", usec // 1000000, usec % 1000000),
    )


class ConnectionLoop:
    """The socket side of the worker loop: open, finish, close and write to connections; the
    sessions decide when. The Worker provides the attributes below and ``_connected``."""

    conns: list[Connection]
    _poll: select.poll
    _by_fd: dict[int, Connection]
    _lock: threading.Lock | None
    _slot: SlotWriter

    def _connected(self, conn: Connection, now: float) -> None:
        raise NotImplementedError

    def _connect(self, conn: Connection, now: float) -> None:
        session = conn.session
        try:
            sock, err = open_socket(session.host, session.port)
        except OSError as exc:
            self._lost(conn, now, f"cannot resolve: {exc}")
            return
        conn.sock = sock
        self._by_fd[sock.fileno()] = conn
        if err:
            self._lost(conn, now, os.strerror(err))
            return
        session.connecting()
        self._poll.register(sock, select.POLLOUT)

    def _finish_connect(self, conn: Connection) -> None:
        sock = conn.sock
        assert sock is not None
        err = connect_error(sock)
        now = _monotonic()
        if err:
            self._lost(conn, now, os.strerror(err))
            return
        configure(sock)
        self._poll.modify(sock, select.POLLIN)
        conn.send_job = self._job_sender(conn)
        conn.reply = complete_sender(sock)
        self._connected(conn, now)

    def _close(self, conn: Connection) -> None:
        if conn.sock is not None:
            self._by_fd.pop(conn.sock.fileno(), None)
            try:
                self._poll.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            try:
                conn.sock.close()
            except OSError:  # its fd was closed under it (a job's os.close): nothing to close
                pass
            conn.sock = None
            conn.reply = conn.serve = None
        self._count_connected()

    def _lost(self, conn: Connection, now: float, why: str) -> None:
        """Close ``conn``; its session schedules the reconnect (backoff, rate-limited lines)."""
        if conn.sock is not None:
            self._by_fd.pop(conn.sock.fileno(), None)
        conn.session.lost(now, why)
        self._close(conn)

    def _count_connected(self) -> None:
        up = sum(1 for c in self.conns if c.session.state == UP)
        self._slot.set(self._slot.servers, up)

    def _send(self, conn: Connection, data: bytes) -> bool:
        sock = conn.sock
        if sock is None or conn.session.state != UP:
            return False
        try:
            sock.sendall(data)
            return True
        except OSError as exc:
            self._lost(conn, _monotonic(), f"send failed: {exc}")
            return False

    def _send_locked(self, conn: Connection, data: bytes) -> bool:
        if self._lock is None:
            return self._send(conn, data)
        with self._lock:  # the job's own sends (status, data) may come from its threads
            return self._send(conn, data)

    def _job_sender(self, conn: Connection) -> Callable[[bytes], None]:
        send = self._send_locked

        def send_job(data: bytes) -> None:
            send(conn, data)

        return send_job


def poll_timeout(deadline: float, now: float) -> int:
    """Milliseconds until ``deadline`` for poll(), rounded up; -1 (no timeout) for ``inf``."""
    if deadline == math.inf:
        return -1
    return max(0, math.ceil((deadline - now) * 1000))
