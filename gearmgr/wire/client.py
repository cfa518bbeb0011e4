"""Submit jobs to Gearman job servers: a small synchronous client over :mod:`gearmgr.protocol`.

Exceptions::

    GearmanError            base class; ERROR packets from a server carry .code
     ├── ServerUnavailable  no server could be reached; names every server tried and its error
     ├── JobFailed          the worker failed the job (WORK_FAIL or WORK_EXCEPTION)
     └── JobTimeout         the answer did not arrive within the timeout

Choosing a server: each job goes to the server that rendezvous hashing of its unique id picks
among the configured ones (:mod:`gearmgr.wire.rendezvous`), so jobs spread over the servers and
a unique id always meets its earlier copies on the same server, where gearmand coalesces them.
A job without a unique id gets a fresh random one (see :meth:`Client.submit`), so it spreads and
never coalesces. When that server cannot be reached the job goes to the next in the job's hash
order, and so on; a server that failed within the last ``RETRY_DELAY`` seconds
(:mod:`gearmgr.wire.servers`) is tried after
the others (in hash order too), so a dead server costs one failed connection per
``RETRY_DELAY``, not one per call. A server is only left for the next before it has accepted
the job (``JOB_CREATED``): once a job exists, losing its server raises instead of submitting it
twice. When every server has failed, :class:`ServerUnavailable` names each one and its error.

One blocking socket per server is kept open across calls and reopened after a failure. A Client is
not thread-safe: use one per thread. After a fork the child opens its own connections.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from gearmgr.errors import GearmgrError
from gearmgr.units import DEFAULT_PORT, parse_address
from gearmgr.wire.protocol import Decoder, Packet, ProtocolError, encode
from gearmgr.wire.protocol import PacketType as T
from gearmgr.wire.servers import ServerChoice

__all__ = [
    "Client",
    "GearmanError",
    "JobFailed",
    "JobStatus",
    "JobTimeout",
    "ServerUnavailable",
]

DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
MAX_WARNINGS = 100  # a job's last WORK_WARNING texts kept for JobFailed (a flood is bounded)

_SUBMIT = {
    ("normal", False): T.SUBMIT_JOB,
    ("high", False): T.SUBMIT_JOB_HIGH,
    ("low", False): T.SUBMIT_JOB_LOW,
    ("normal", True): T.SUBMIT_JOB_BG,
    ("high", True): T.SUBMIT_JOB_HIGH_BG,
    ("low", True): T.SUBMIT_JOB_LOW_BG,
}


class GearmanError(GearmgrError):
    """Base class of the client's errors. ``code`` is set for a server's ERROR packet."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ServerUnavailable(GearmanError):
    """No job server could be reached; ``errors`` maps each server tried to its error."""

    def __init__(self, errors: dict[str, str]) -> None:
        tried = "; ".join(f"{server}: {err}" for server, err in errors.items())
        super().__init__(f"no job server reachable (tried {tried})")
        self.errors = errors


class JobFailed(GearmanError):
    """The worker failed the job: WORK_FAIL (with any WORK_WARNING texts) or WORK_EXCEPTION."""

    def __init__(
        self, function: str, handle: str, warnings: list[str], exception: str | None = None
    ) -> None:
        reason = exception or "; ".join(warnings) or "no reason given by the worker"
        super().__init__(f"job {handle} ({function}) failed: {reason}")
        self.function = function
        self.handle = handle
        self.warnings = warnings
        self.exception = exception


class JobTimeout(GearmanError):
    """The job's answer did not arrive in time."""


class JobStatus(NamedTuple):
    """GET_STATUS answer. ``known=False``: the server has no such job (done, or never queued)."""

    known: bool
    running: bool
    numerator: int
    denominator: int


def encode_data(data: object) -> bytes:
    """Workload as bytes: bytes-like as is, ``str`` as UTF-8, anything else as JSON."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


class _Connection:
    """One blocking socket to one server, with its decoder and the packets read ahead."""

    def __init__(self, server: str, timeout: float) -> None:
        self.server = server
        self.sock = socket.create_connection(parse_address(server), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder()
        self.ready: list[Packet] = []

    def send(self, data: bytes, timeout: float) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def read(self, timeout: float | None) -> Packet:
        """Next packet; ``TimeoutError`` when none arrives in ``timeout`` seconds."""
        while not self.ready:
            if timeout is not None and timeout <= 0:  # settimeout(0) would mean non-blocking
                raise TimeoutError("timed out")
            self.sock.settimeout(timeout)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("connection closed by the server")
            self.ready.extend(self.decoder.feed(chunk))
        return self.ready.pop(0)

    def close(self) -> None:
        self.sock.close()


class _Deadline:
    """What is left of a call's timeout (``None``: wait forever)."""

    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        return None if self.end is None else max(self.end - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def submit_packet(
    function: str, data: Any, background: bool, priority: str, unique: str | None
) -> tuple[bytes, bytes, bytes]:
    """A job's SUBMIT packet, with its unique id and workload (which pick its server), for
    Client and AsyncClient. ValueError for an unknown priority or a NUL in the names."""
    ptype = _SUBMIT.get((priority, background))
    if ptype is None:
        raise ValueError(f"priority must be 'high', 'normal' or 'low', not {priority!r}")
    name = function.encode("utf-8")
    key = (uuid.uuid4().hex if unique is None else unique).encode("utf-8")
    if b"\0" in name or b"\0" in key:
        raise ValueError("function names and unique ids cannot contain NUL bytes")
    payload = encode_data(data)
    return encode(ptype, name, key, payload), key, payload


def job_status(answer: Packet) -> JobStatus:
    """A STATUS_RES packet as a JobStatus."""
    known, running, num, den = answer.args[1:]
    return JobStatus(known == b"1", running == b"1", _int(num), _int(den))


class Client:
    """A Gearman client for one or more job servers (see the module docstring for the choice
    of a job's server and failover).

    ``servers`` is a list of ``HOST:PORT`` or one string, comma-separated. ``timeout`` is the
    default for every call (``None``: wait for results forever). ``connect_timeout`` bounds
    connecting to one server and its first answer, so a silent server does not stall failover.
    """

    def __init__(
        self,
        servers: list[str] | str = DEFAULT_SERVER,
        timeout: float | None = None,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self._choice = ServerChoice(servers)  # ValueError for none or a bad address, now
        self.servers = self._choice.servers
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._conns: dict[str, _Connection] = {}
        self._pid = os.getpid()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (the client reconnects if used again)."""
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def submit(
        self,
        function: str,
        data: bytes | str | object = b"",
        *,
        background: bool = False,
        priority: str = "normal",
        unique: str | None = None,
        timeout: float | None = None,
        on_data: Callable[[bytes], Any] | None = None,
        on_warning: Callable[[bytes], Any] | None = None,
        on_status: Callable[[int, int], Any] | None = None,
    ) -> bytes | str:
        """Submit a job; return its result (``bytes``), or its handle (``str``) if ``background``.

        ``unique`` defaults to a fresh ``uuid4().hex``: gearmand coalesces jobs that share a
        unique id, and its sqlite queue stores jobs with an empty one under a single key. The
        unique id also picks the job's server (rendezvous hashing; ``"-"``: the workload does,
        as gearmand then coalesces by it), so a random one spreads jobs evenly. The callbacks
        receive WORK_DATA, WORK_WARNING and WORK_STATUS of a foreground job as they arrive.
        Raises :class:`JobFailed`, :class:`JobTimeout`, :class:`ServerUnavailable` or
        :class:`GearmanError` (an ERROR packet or a broken connection).
        """
        packet, key, payload = submit_packet(function, data, background, priority, unique)
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        conn, handle = self._create(packet, self._choice.for_job(key, payload), deadline)
        if background:
            self._choice.created(handle, conn.server)
            return handle
        callbacks = (on_data, on_warning, on_status)
        return self._wait(conn, function, handle, deadline, callbacks)

    submit_job = submit

    def status(self, handle: str, *, timeout: float | None = None) -> JobStatus:
        """Ask for a job's status (GET_STATUS) at the server that created it.

        A handle this client did not create is asked of every server; the first ``known``
        answer wins. If none knows it and some server could not be asked, that is
        :class:`ServerUnavailable`, since the job may live there.
        """
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        packet = encode(T.GET_STATUS, handle.encode("utf-8"))
        server = self._choice.creator(handle)
        errors: dict[str, str] = {}
        for candidate in [server] if server else self.servers:
            try:
                answer = self._request(candidate, packet, T.STATUS_RES, deadline)
            except (OSError, ProtocolError) as exc:
                errors[candidate] = _describe(exc)
                continue
            result = job_status(answer)
            if result.known:
                return result
        if errors:
            raise ServerUnavailable(errors)
        self._choice.forget(handle)
        return JobStatus(False, False, 0, 0)

    def echo(self, data: bytes = b"", *, timeout: float | None = None) -> bytes:
        """ECHO_REQ to the first server that answers; returns the echoed bytes."""
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        packet = encode(T.ECHO_REQ, data)
        errors: dict[str, str] = {}
        for server in self._choice.ordered(self.servers):
            try:
                return self._request(server, packet, T.ECHO_RES, deadline).args[0]
            except (OSError, ProtocolError) as exc:
                errors[server] = _describe(exc)
        raise ServerUnavailable(errors)

    def ping(self, *, timeout: float | None = None) -> float:
        """Round-trip time in seconds of an ECHO_REQ to the first server that answers."""
        start = time.monotonic()
        self.echo(b"ping", timeout=timeout)
        return time.monotonic() - start

    # -- connections ------------------------------------------------------------------------

    def _connect(self, server: str, deadline: _Deadline) -> _Connection:
        """The open connection to ``server``, or a new one opted in to WORK_EXCEPTION."""
        if self._pid != os.getpid():  # forked: the sockets belong to the parent
            self._conns.clear()
            self._pid = os.getpid()
        conn = self._conns.get(server)
        if conn is None:
            conn = _Connection(server, self._io_timeout(deadline))
            self._conns[server] = conn
            conn.send(encode(T.OPTION_REQ, b"exceptions"), self._io_timeout(deadline))
            self._read(conn, deadline, initial=True)  # OPTION_RES, or ERROR from old servers
            self._choice.answered(server)
        return conn

    def _io_timeout(self, deadline: _Deadline) -> float:
        """Timeout for connecting and for a server's first answers: short, within the call's."""
        left = deadline.left()
        if left is not None and left <= 0:
            raise TimeoutError("timed out")
        return self.connect_timeout if left is None else min(left, self.connect_timeout)

    def _drop(self, server: str, failed: bool = True) -> None:
        """Close the connection to ``server``; if ``failed``, try it last for a while."""
        conn = self._conns.pop(server, None)
        if conn is not None:
            conn.close()
        if failed:
            self._choice.failed(server)

    def _read(self, conn: _Connection, deadline: _Deadline, initial: bool = False) -> Packet:
        """Next packet; an ERROR packet raises :class:`GearmanError` unless ``initial``."""
        packet = conn.read(self._io_timeout(deadline) if initial else deadline.left())
        if packet.type == T.ERROR and not initial:
            code, text = packet.args
            raise GearmanError(f"{conn.server}: {_text(code)}: {_text(text)}", code=_text(code))
        return packet

    def _request(self, server: str, packet: bytes, answer: int, deadline: _Deadline) -> Packet:
        """Send one request and return the answer of type ``answer`` (one retry if stale)."""
        for attempt in (1, 2):
            reused = server in self._conns
            try:
                conn = self._connect(server, deadline)
                conn.send(packet, self._io_timeout(deadline))
                while True:
                    reply = self._read(conn, deadline)
                    if reply.type == answer:
                        return reply
            except (OSError, ProtocolError) as exc:
                self._drop(server)
                if attempt == 2 or not reused or isinstance(exc, TimeoutError):
                    raise
        raise AssertionError("unreachable")

    def _create(
        self, packet: bytes, order: list[str], deadline: _Deadline
    ) -> tuple[_Connection, str]:
        """Send a SUBMIT packet to the first server in ``order`` (the job's hash order, those
        that failed lately last) that takes it; return its connection and the handle."""
        errors: dict[str, str] = {}
        for server in order:
            if deadline.expired():
                break
            try:
                created = self._request(server, packet, T.JOB_CREATED, deadline)
            except (OSError, ProtocolError) as exc:
                errors[server] = _describe(exc)
            else:
                return self._conns[server], _text(created.args[0])
        if deadline.expired():
            tried = "".join(f"; {name}: {err}" for name, err in errors.items())
            raise JobTimeout(f"no job server accepted the job in time{tried}")
        raise ServerUnavailable(errors)

    # -- foreground jobs --------------------------------------------------------------------

    def _wait(
        self,
        conn: _Connection,
        function: str,
        handle: str,
        deadline: _Deadline,
        callbacks: tuple[Callable[..., Any] | None, ...],
    ) -> bytes:
        """Read WORK_* packets for ``handle`` until the job ends."""
        on_data, on_warning, on_status = callbacks
        warnings: deque[str] = deque(maxlen=MAX_WARNINGS)
        raw_handle = handle.encode("utf-8")
        try:
            while True:
                packet = self._read(conn, deadline)
                # rstrip: gearmand 1.1.20 turns WORK_EXCEPTION into a WORK_FAIL whose handle
                # ends with a stray NUL for clients that did not opt in (clients.md section 5)
                if not packet.args or packet.args[0].rstrip(b"\0") != raw_handle:
                    continue  # a late answer for an earlier job on this connection
                kind, args = packet.type, packet.args
                if kind == T.WORK_COMPLETE:
                    return args[1]
                if kind == T.WORK_FAIL:
                    raise JobFailed(function, handle, list(warnings))
                if kind == T.WORK_EXCEPTION:
                    raise JobFailed(function, handle, list(warnings), _text(args[1]))
                if kind == T.WORK_WARNING:
                    warnings.append(_text(args[1]))
                    if on_warning:
                        on_warning(args[1])
                elif kind == T.WORK_DATA and on_data:
                    on_data(args[1])
                elif kind == T.WORK_STATUS and on_status:
                    on_status(_int(args[1]), _int(args[2]))
        except TimeoutError:
            # the server is fine, but late packets of this job must not reach the next call
            self._drop(conn.server, failed=False)
            raise JobTimeout(f"job {handle} ({function}) did not finish in time") from None
        except (OSError, ProtocolError) as exc:
            self._drop(conn.server)
            raise GearmanError(
                f"{conn.server}: connection lost while waiting for job {handle} ({function}): "
                f"{_describe(exc)}"
            ) from exc
