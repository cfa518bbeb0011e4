"""Submit jobs from asyncio applications: :class:`AsyncClient`, many submits in flight on one
connection per server.

The same arguments, defaults and errors as :class:`~gearmgr.wire.client.Client` (whose
exceptions, packet types and workload encoding are used as they are), with ``await``::

    async with AsyncClient(["127.0.0.1:4730"]) as client:
        results = await asyncio.gather(*(client.submit("reverse", t) for t in texts))

gearmand answers the requests of one connection in the order they came (SUBMIT_JOB with
JOB_CREATED, GET_STATUS with STATUS_RES, OPTION_REQ with OPTION_RES, and any of them with
ERROR), so each connection keeps one queue of requests waiting for their answer; the WORK_*
packets of foreground jobs name their handle and go to the submits waiting on it. Failover is
``Client``'s: servers in the order given, one that failed lately tried last; a server is left
for the next only before it has created the job, never after (the job is never submitted
twice). A timeout leaves the connection open: late packets of a job nobody waits for any more
are dropped by their handle.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from gearmgr.units import parse_address
from gearmgr.wire.client import (
    DEFAULT_SERVER,
    MAX_WARNINGS,
    GearmanError,
    JobFailed,
    JobStatus,
    JobTimeout,
    ServerUnavailable,
    _int,
    _text,
    job_status,
    submit_packet,
)
from gearmgr.wire.protocol import Decoder, Packet, encode
from gearmgr.wire.protocol import PacketType as T
from gearmgr.wire.servers import ServerChoice

__all__ = ["AsyncClient"]

_ORDERED = frozenset({T.JOB_CREATED, T.STATUS_RES, T.OPTION_RES, T.ECHO_RES, T.ERROR})
_TERMINAL = frozenset({T.WORK_COMPLETE, T.WORK_FAIL, T.WORK_EXCEPTION})


class _Waiter:
    """A foreground submit waiting for its job's end: its result future and callbacks."""

    __slots__ = ("callbacks", "function", "future", "handle", "warnings")

    def __init__(self, function: str, future: asyncio.Future[bytes], callbacks: tuple) -> None:
        self.function = function
        self.future = future
        self.callbacks = callbacks
        self.warnings: deque[str] = deque(maxlen=MAX_WARNINGS)
        self.handle = ""


class _Request:
    """A request waiting for its ordered answer, of type ``expect`` (or ERROR); ``waiter``:
    a foreground submit's."""

    __slots__ = ("answer", "expect", "waiter")

    def __init__(self, answer: asyncio.Future[Packet], expect: int, waiter: _Waiter | None) -> None:
        self.answer = answer
        self.expect = expect
        self.waiter = waiter


class _Connection(asyncio.Protocol):
    """One server connection: the requests waiting for an answer, in order, and the
    foreground jobs waiting for their end, by handle."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder()
        self.requests: deque[_Request] = deque()
        self.jobs: dict[bytes, deque[_Waiter]] = {}
        self.lost: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def request(
        self, data: bytes, expect: int, waiter: _Waiter | None = None
    ) -> asyncio.Future[Packet]:
        """Send ``data`` (one request); the future of its answer, of type ``expect`` or ERROR."""
        if self.transport is None or self.lost:
            raise ConnectionResetError(self.lost or "not connected")
        answer: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()
        self.requests.append(_Request(answer, expect, waiter))
        self.transport.write(data)
        return answer

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except Exception as exc:  # ProtocolError: the stream is out of sync
            self._fail(f"protocol error: {exc}")
            if self.transport is not None:
                self.transport.close()
            return
        for packet in packets:
            if packet.type in _ORDERED:
                if not self._answered(packet):
                    return
            elif packet.args:
                self._job_packet(packet)

    def _answered(self, packet: Packet) -> bool:
        """False when the answer is not of the type the request waits for: the answers are
        out of step with the requests, so every request fails and the connection closes."""
        if not self.requests:
            return True  # an answer nobody asked for: ignored
        if packet.type not in (self.requests[0].expect, T.ERROR):
            expected, got = T(self.requests[0].expect).name, T(packet.type).name
            self._fail(f"protocol error: expected {expected}, got {got}")
            if self.transport is not None:
                self.transport.close()
            return False
        request = self.requests.popleft()
        waiter = request.waiter
        if waiter is not None and packet.type == T.JOB_CREATED and not request.answer.done():
            waiter.handle = _text(packet.args[0])
            self.jobs.setdefault(packet.args[0], deque()).append(waiter)
        if not request.answer.done():
            request.answer.set_result(packet)
        return True

    def _job_packet(self, packet: Packet) -> None:
        # rstrip: gearmand 1.1.20 ends a WORK_FAIL made of a WORK_EXCEPTION with a stray NUL
        handle = packet.args[0].rstrip(b"\0")
        waiters = self.jobs.get(handle)
        if not waiters:
            return  # a job nobody waits for any more (timed out)
        kind = packet.type
        if kind in _TERMINAL:
            waiter = waiters.popleft()
            if not waiters:
                del self.jobs[handle]
            if waiter.future.done():
                return
            if kind == T.WORK_COMPLETE:
                waiter.future.set_result(packet.args[1])
            else:
                exception = _text(packet.args[1]) if kind == T.WORK_EXCEPTION else None
                waiter.future.set_exception(
                    JobFailed(waiter.function, waiter.handle, list(waiter.warnings), exception)
                )
            return
        for waiter in waiters:
            if waiter.future.done():  # its submit raised already (a callback, a cancel)
                continue
            on_data, on_warning, on_status = waiter.callbacks
            try:
                if kind == T.WORK_WARNING:
                    waiter.warnings.append(_text(packet.args[1]))
                    if on_warning:
                        on_warning(packet.args[1])
                elif kind == T.WORK_DATA and on_data:
                    on_data(packet.args[1])
                elif kind == T.WORK_STATUS and on_status:
                    on_status(_int(packet.args[1]), _int(packet.args[2]))
            except Exception as exc:  # a callback's error is its own submit's, as in Client
                if not waiter.future.done():
                    waiter.future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(f"connection lost: {exc}" if exc else "connection closed by the server")

    def _fail(self, why: str) -> None:
        """Every request and job of this connection fails: the requests so that their submits
        try the next server, the jobs (created there) with a GearmanError."""
        self.lost = self.lost or why
        while self.requests:
            answer = self.requests.popleft().answer
            if not answer.done():
                answer.set_exception(ConnectionResetError(why))
        for handle, waiters in self.jobs.items():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        GearmanError(
                            f"{self.server}: connection lost while waiting for job"
                            f" {_text(handle)} ({waiter.function}): {why}"
                        )
                    )
        self.jobs.clear()

    def close(self) -> None:
        if self.transport is not None and self.loop is not None and not self.loop.is_closed():
            self.transport.close()


class AsyncClient:
    """A Gearman client for asyncio (see the module docstring). ``servers``, ``timeout`` and
    ``connect_timeout`` mean what they mean for :class:`~gearmgr.wire.client.Client`."""

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
        self._connecting: dict[str, asyncio.Task[_Connection]] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection (the client reconnects if used again)."""
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    async def submit(
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
        """Submit a job; its result (``bytes``), or its handle (``str``) if ``background``.
        As :meth:`Client.submit <gearmgr.wire.client.Client.submit>`, errors included."""
        packet, key, payload = submit_packet(function, data, background, priority, unique)
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        end = None if limit is None else loop.time() + limit
        waiter = None
        if not background:
            future: asyncio.Future[bytes] = loop.create_future()
            waiter = _Waiter(function, future, (on_data, on_warning, on_status))
        try:
            async with asyncio.timeout_at(end):
                server, created = await self._create(packet, key, payload, waiter)
                handle = _text(created.args[0])
                if waiter is None:
                    self._choice.created(handle, server)
                    return handle
                return await waiter.future
        except TimeoutError:
            if waiter is None or not waiter.handle:
                raise JobTimeout("no job server accepted the job in time") from None
            self._forget(waiter)
            raise JobTimeout(f"job {waiter.handle} ({function}) did not finish in time") from None

    submit_job = submit

    async def status(self, handle: str, *, timeout: float | None = None) -> JobStatus:
        """GET_STATUS at the server that created the job (else at each server in turn), as
        :meth:`Client.status <gearmgr.wire.client.Client.status>`."""
        limit = self.timeout if timeout is None else timeout
        packet = encode(T.GET_STATUS, handle.encode("utf-8"))
        server = self._choice.creator(handle)
        errors: dict[str, str] = {}
        candidate = server or self.servers[0]
        try:
            async with asyncio.timeout(limit):
                for candidate in [server] if server else self.servers:
                    try:
                        conn = await self._connection(candidate)
                        answer = await conn.request(packet, T.STATUS_RES)
                    except OSError as exc:
                        errors[candidate] = str(exc) or type(exc).__name__
                        continue
                    _error(conn, answer)
                    result = job_status(answer)
                    if result.known:
                        return result
        except TimeoutError:  # as Client: a server that does not answer in time is unavailable
            errors[candidate] = "timed out"
        if errors:
            raise ServerUnavailable(errors)
        self._choice.forget(handle)
        return JobStatus(False, False, 0, 0)

    # -- servers and connections ------------------------------------------------------------

    def _candidates(self, unique: bytes, payload: bytes) -> list[str]:
        """The servers to try for a job, in order, as Client: the rendezvous order of its
        unique id, those that failed lately last (gearmgr.wire.servers)."""
        return self._choice.for_job(unique, payload)

    async def _create(
        self, packet: bytes, unique: bytes, payload: bytes, waiter: _Waiter | None
    ) -> tuple[str, Packet]:
        """Send a SUBMIT to the first server that takes it: the server and its JOB_CREATED."""
        errors: dict[str, str] = {}
        for server in self._candidates(unique, payload):
            try:
                conn = await self._connection(server)
                created = await conn.request(packet, T.JOB_CREATED, waiter)
            except OSError as exc:
                errors[server] = str(exc) or type(exc).__name__
                self._drop(server)
                continue
            _error(conn, created)
            return server, created
        raise ServerUnavailable(errors)

    async def _connection(self, server: str) -> _Connection:
        """The open connection to ``server``; one connect at a time per server, however many
        submits wait for it."""
        conn = self._conns.get(server)
        if conn is not None and not conn.lost:
            if conn.loop is asyncio.get_running_loop():
                return conn
            del self._conns[server]  # made in another event loop (an earlier asyncio.run)
        task = self._connecting.get(server)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(server))
            self._connecting[server] = task
            task.add_done_callback(lambda _: self._connecting.pop(server, None))
        return await asyncio.shield(task)

    async def _open(self, server: str) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = parse_address(server)
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(server), host, port)
                # opt in to WORK_EXCEPTION; old servers answer ERROR, which is fine
                await conn.request(encode(T.OPTION_REQ, b"exceptions"), T.OPTION_RES)
        except TimeoutError:
            self._choice.failed(server)
            raise TimeoutError(f"no answer within {self.connect_timeout:g}s") from None
        except OSError:
            self._choice.failed(server)
            raise
        self._choice.answered(server)
        self._conns[server] = conn
        return conn

    def _drop(self, server: str) -> None:
        conn = self._conns.pop(server, None)
        if conn is not None:
            conn.close()
        self._choice.failed(server)

    def _forget(self, waiter: _Waiter) -> None:
        """A foreground submit gave up (timeout): its job's packets are dropped from now on."""
        for conn in self._conns.values():
            waiters = conn.jobs.get(waiter.handle.encode())
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del conn.jobs[waiter.handle.encode()]


def _error(conn: _Connection, answer: Packet) -> None:
    """An ERROR answer raises :class:`GearmanError`, as Client does."""
    if answer.type == T.ERROR:
        code, text = answer.args
        raise GearmanError(f"{conn.server}: {_text(code)}: {_text(text)}", code=_text(code))
