"""Request/answer listeners served from the supervisor's selector, never blocking its loop.

The control socket and the metrics endpoint both take one request per connection and answer
it. A client that connects and sends nothing, or does not read its answer, must not stall the
loop that reaps workers and handles signals: accepted connections are non-blocking, registered
in the same selector, read as bytes arrive, answered once the request is whole (what does not
fit the socket buffer at once is written as the client reads), and dropped when they overstay
REQUEST_TIMEOUT.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field

REQUEST_TIMEOUT = 2.0  # seconds a client has to send its whole request
MAX_REQUEST = 65536
SEND_TIMEOUT = 10.0  # seconds the answer may take to leave


@dataclass
class _Pending:
    sock: socket.socket
    deadline: float
    buf: bytes = field(default=b"")
    out: memoryview | None = None  # the answer, while it is being written


class Listener:
    """Subclasses say when a request is complete and what to answer."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._selector: selectors.BaseSelector | None = None
        self._pending: dict[int, _Pending] = {}

    def attach(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self)

    def complete(self, data: bytes) -> bool:
        raise NotImplementedError

    def answer(self, data: bytes) -> bytes:
        raise NotImplementedError

    def ready(self, fileobj: object) -> None:
        """The selector says ``fileobj`` (the listening socket or a connection) is readable."""
        if fileobj is self.sock:
            self._accept()
            return
        assert isinstance(fileobj, socket.socket)
        pending = self._pending.get(fileobj.fileno())
        if pending is None:
            return
        if pending.out is not None:
            self._write(pending)
            return
        try:
            chunk = fileobj.recv(MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pending)
            return
        pending.buf += chunk
        if not chunk or self.complete(pending.buf) or len(pending.buf) > MAX_REQUEST:
            self._respond(pending)

    def sweep(self, now: float) -> None:
        """Drop the connections that overstayed their deadline."""
        for pending in [p for p in self._pending.values() if now > p.deadline]:
            self._drop(pending)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            self._pending[conn.fileno()] = _Pending(conn, time.monotonic() + REQUEST_TIMEOUT)
            if self._selector is not None:
                self._selector.register(conn, selectors.EVENT_READ, self)

    def _respond(self, pending: _Pending) -> None:
        try:
            pending.out = memoryview(self.answer(pending.buf))
        except OSError:
            self._drop(pending)
            return
        pending.deadline = time.monotonic() + SEND_TIMEOUT
        if self._selector is not None:
            self._selector.modify(pending.sock, selectors.EVENT_WRITE, self)
        self._write(pending)

    def _write(self, pending: _Pending) -> None:
        """Write what the socket takes now; the selector calls again when it takes more."""
        assert pending.out is not None
        try:
            sent = pending.sock.send(pending.out)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pending)
            return
        pending.out = pending.out[sent:]
        if not pending.out:
            self._drop(pending)

    def _drop(self, pending: _Pending) -> None:
        self._pending.pop(pending.sock.fileno(), None)
        if self._selector is not None:
            try:
                self._selector.unregister(pending.sock)
            except (KeyError, ValueError):
                pass
        pending.sock.close()

    def close(self) -> None:
        for pending in list(self._pending.values()):
            self._drop(pending)
        if self._selector is not None:
            try:
                self._selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        self.sock.close()

    def close_in_child(self) -> None:
        """A forked worker drops the listener's sockets without touching the selector."""
        for pending in self._pending.values():
            pending.sock.close()
        self.sock.close()
