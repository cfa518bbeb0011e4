"""The Job object handed to worker functions (SPEC.md "Worker files")."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from gearmgr.errors import exception_message
from gearmgr.wire.protocol import PacketType, encode

#: Characters of an exception's message a failed job's WORK_WARNING carries to its client.
WARNING_LIMIT = 65536

_WORK_STATUS = PacketType.WORK_STATUS
_WORK_DATA = PacketType.WORK_DATA
_WORK_WARNING = PacketType.WORK_WARNING

job_logger = logging.getLogger("gearmgr.job")


class JobLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose records carry the function and the job handle."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra['function']} {extra['handle']}] {msg}", kwargs


class Job:
    """One job assigned by gearmand: its workload and the ways to talk back to the client.

    ``send`` writes a packet to the connection the job came from; it is given by the worker.
    The handle and the unique id arrive as bytes and are decoded only when asked for.
    """

    __slots__ = ("_handle", "_log", "_send", "_unique", "data", "function")

    def __init__(
        self,
        handle: bytes | str,
        function: str,
        unique: bytes | str,
        data: bytes,
        send: Callable[[bytes], None],
    ) -> None:
        self._handle = handle.encode() if isinstance(handle, str) else handle
        self.function = function
        self._unique = unique
        self.data = data
        self._send = send
        self._log: JobLog | None = None

    @property
    def handle(self) -> str:
        """The job handle gearmand gave the job (``H:host:N``)."""
        return self._handle.decode()

    @property
    def unique(self) -> str:
        """The unique id the client sent (gearmgr's client always sends one)."""
        u = self._unique
        return u.decode("utf-8", "replace") if isinstance(u, bytes) else u

    @property
    def text(self) -> str:
        """The workload decoded as UTF-8."""
        return self.data.decode("utf-8")

    def json(self) -> Any:
        """The workload parsed as JSON."""
        return json.loads(self.data)

    @property
    def log(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger whose records carry the function and the job handle."""
        if self._log is None:
            self._log = JobLog(job_logger, {"function": self.function, "handle": self.handle})
        return self._log

    def status(self, numerator: int, denominator: int) -> None:
        """Report progress (WORK_STATUS): the client and ``gearmgr``'s GET_STATUS see it."""
        self._send(
            encode(
                _WORK_STATUS,
                self._handle,
                str(int(numerator)).encode(),
                str(int(denominator)).encode(),
            )
        )

    def send_data(self, chunk: bytes | str) -> None:
        """Stream a partial result to the client (WORK_DATA)."""
        self._send(encode(_WORK_DATA, self._handle, to_bytes(chunk)))

    def warning(self, message: bytes | str) -> None:
        """Send a warning to the client (WORK_WARNING)."""
        self._send(encode(_WORK_WARNING, self._handle, to_bytes(message)))

    def __repr__(self) -> str:
        return f"<Job {self.function} {self.handle} unique={self.unique!r} {len(self.data)}B>"


def failure_reply(handle: bytes, exc: BaseException) -> bytes:
    """What fails a job that raised ``exc`` for its client: WORK_WARNING with the exception's
    type and whole message (bounded, whatever its characters), then WORK_FAIL."""
    text = f"{type(exc).__name__}: {exception_message(exc)[:WARNING_LIMIT]}"
    warning = text.encode("utf-8", "backslashreplace")
    return encode(_WORK_WARNING, handle, warning) + encode(PacketType.WORK_FAIL, handle)


def to_bytes(value: Any) -> bytes:
    """A worker's return value as the job's result: bytes as is, str as UTF-8, None as empty,
    anything else as JSON."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):  # a bytes subclass is bytes too
        return bytes(value)
    return json.dumps(value).encode("utf-8")
