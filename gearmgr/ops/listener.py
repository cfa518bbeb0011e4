"""Request/answer listeners served from the supervisor's selector, never blocking its loop.

The control socket and the metrics endpoint both take one request per connection and answer
it. Nothing a client sends or fails to send may stall or stop the loop that reaps workers and
handles signals:

- accepted connections are non-blocking, registered in the same selector, read as bytes
  arrive, answered once the request is whole (what does not fit the socket buffer at once is
  written as the client reads), and dropped when they overstay REQUEST_TIMEOUT;
- a request is at most MAX_REQUEST bytes; at most MAX_CONNECTIONS are open at once, and the
  listening socket leaves the selector while that many are (a flood waits in the kernel's
  backlog instead of costing fds);
- when accept() fails for lack of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listening
  socket leaves the selector for ACCEPT_PAUSE seconds: a level-triggered selector would
  otherwise report it readable again at once and the loop would spin;
- an exception while answering one request is logged and answered as an error to that client
  alone (``error_answer``);
- an answer may come later (``answer`` returns :data:`LATER`): the connection then waits, up to
  LATER_TIMEOUT, for :meth:`Reply.send`, e.g. ``gearmgr reload`` waiting for the outcome.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import time
from dataclasses import dataclass, field

from gearmgr.errors import exception_text

log = logging.getLogger("gearmgr.supervisor")

REQUEST_TIMEOUT = 2.0  # seconds a client has to send its whole request
MAX_REQUEST = 65536  # bytes of one request
SEND_TIMEOUT = 10.0  # seconds the answer may take to leave
LATER_TIMEOUT = 120.0  # seconds an answer given later may take to come
MAX_CONNECTIONS = 64  # open connections per listener
ACCEPT_PAUSE = 1.0  # seconds the listener stops accepting after running out of fds
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Deferred:
    """What :meth:`Listener.answer` returns when the answer comes later."""


LATER = Deferred()


@dataclass(eq=False)
class _Pending:
    sock: socket.socket
    deadline: float
    buf: bytes = field(default=b"")
    out: memoryview | None = None  # the answer, while it is being written
    waiting: bool = False  # the request is whole; its answer comes later
    open: bool = True
    answering: bool = False  # inside answer(): a Reply sent now is kept in ``early``
    early: bytes | None = None


class Reply:
    """Answers one request later: ``send(bytes)`` once; a no-op if the client went away."""

    def __init__(self, listener: Listener, pending: _Pending) -> None:
        self._listener = listener
        self._pending = pending

    def send(self, data: bytes) -> None:
        pending = self._pending
        if pending.answering:  # answered later, but before answer() even returned
            pending.early = data
        elif pending.open and pending.waiting:
            pending.waiting = False
            self._listener._start_write(pending, data)


class Listener:
    """Subclasses say when a request is complete and what to answer."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._selector: selectors.BaseSelector | None = None
        self._pending: dict[int, _Pending] = {}
        self._accepting = False
        self._paused_until = 0.0
        self._pause_logged = False

    def attach(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._set_accepting(True)

    def complete(self, data: bytes) -> bool:
        raise NotImplementedError

    def answer(self, data: bytes, reply: Reply) -> bytes | Deferred:
        """The answer to request ``data``, or LATER and ``reply.send(answer)`` afterwards."""
        raise NotImplementedError

    def error_answer(self, message: str) -> bytes:
        """What a client gets when answering its request failed."""
        raise NotImplementedError

    def ready(self, fileobj: object) -> None:
        """The selector says ``fileobj`` (the listening socket or a connection) is ready."""
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
            chunk = fileobj.recv(MAX_REQUEST + 1)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pending)
            return
        if pending.waiting:  # the request is whole: more bytes are ignored, EOF ends it
            if not chunk:
                self._drop(pending)
            return
        pending.buf += chunk
        if not chunk or self.complete(pending.buf) or len(pending.buf) > MAX_REQUEST:
            self._respond(pending)

    def sweep(self, now: float) -> None:
        """Drop the connections that overstayed their deadline; accept again after a pause."""
        for pending in [p for p in self._pending.values() if now > p.deadline]:
            self._drop(pending)
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0  # one warning per shortage: reset by the next accept()
            self._set_accepting(len(self._pending) < MAX_CONNECTIONS)

    def _set_accepting(self, on: bool) -> None:
        if self._selector is None or on == self._accepting:
            return
        if on:
            self._selector.register(self.sock, selectors.EVENT_READ, self)
        else:
            try:
                self._selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
        self._accepting = on

    def _accept(self) -> None:
        while len(self._pending) < MAX_CONNECTIONS:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause(exc)
                return
            conn.setblocking(False)
            self._pause_logged = False
            self._pending[conn.fileno()] = _Pending(conn, time.monotonic() + REQUEST_TIMEOUT)
            if self._selector is not None:
                self._selector.register(conn, selectors.EVENT_READ, self)
        self._set_accepting(False)  # full: taken up again when a connection ends

    def _pause(self, exc: OSError) -> None:
        """Out of fds or memory: stop accepting for a while instead of spinning on it."""
        self._paused_until = time.monotonic() + ACCEPT_PAUSE
        self._set_accepting(False)
        if not self._pause_logged:
            self._pause_logged = True
            log.warning(
                "%s: cannot accept a connection (%s); not accepting for %gs",
                self.describe(),
                exc.strerror,
                ACCEPT_PAUSE,
            )

    def describe(self) -> str:
        return "listener"

    def _respond(self, pending: _Pending) -> None:
        pending.answering = True
        try:
            out = self.answer(pending.buf, Reply(self, pending))
        except Exception as exc:  # one bad request costs its own client, nothing else
            log.error(
                "%s: answering a request failed: %s",
                self.describe(),
                exception_text(exc, 200),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            try:
                out = self.error_answer(f"internal error: {type(exc).__name__}")
            except Exception:
                self._drop(pending)
                return
        finally:
            pending.answering = False
        if isinstance(out, Deferred) and pending.early is not None:
            out = pending.early
        if isinstance(out, Deferred):
            pending.waiting = True
            pending.buf = b""
            pending.deadline = time.monotonic() + LATER_TIMEOUT
            return
        self._start_write(pending, out)

    def _start_write(self, pending: _Pending, data: bytes) -> None:
        pending.out = memoryview(data)
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
        if not pending.open:
            return
        pending.open = False
        self._pending.pop(pending.sock.fileno(), None)
        if self._selector is not None:
            try:
                self._selector.unregister(pending.sock)
            except (KeyError, ValueError):
                pass
        pending.sock.close()
        if not self._paused_until:
            self._set_accepting(len(self._pending) < MAX_CONNECTIONS)

    def close(self) -> None:
        for pending in list(self._pending.values()):
            self._drop(pending)
        self._set_accepting(False)
        self.sock.close()

    def close_in_child(self) -> None:
        """A forked worker drops the listener's sockets without touching the selector."""
        for pending in self._pending.values():
            pending.sock.close()
        self.sock.close()
