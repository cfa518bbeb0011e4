"""The text admin protocol (``status``, ``workers``, ``version``), sans-IO. It shares the job
server's port: requests are lines, answers are lines ending with a line holding a single ``.``
(for list commands) or a single ``OK ...``/``ERR ...`` line. Re-exported by
:mod:`gearmgr.wire.protocol`."""

from __future__ import annotations

from dataclasses import dataclass

from gearmgr.wire.packets import ProtocolError


class AdminDecoder:
    """Incremental decoder for answers of the text admin protocol.

    ``expect_list`` tells whether the command answers with lines ended by ``.`` (``status``,
    ``workers``) or with one line (``version``, ``getpid``). :meth:`feed` returns the answer's
    lines once it is complete, else ``None``.
    """

    __slots__ = ("_buf", "_list")

    def __init__(self, expect_list: bool) -> None:
        self._buf = b""
        self._list = expect_list

    def feed(self, data: bytes) -> list[str] | None:
        self._buf += data
        if b"\n" not in self._buf:
            return None
        lines = self._buf.decode("utf-8", "replace").split("\n")
        # no tab: a `status` row of a function named "ERR ..." is not an error
        if lines[0].startswith("ERR ") and "\t" not in lines[0]:
            raise ProtocolError(f"admin command failed: {lines[0].strip()}")
        if not self._list:
            return [lines[0].rstrip("\r")]
        complete = [ln.rstrip("\r") for ln in lines[:-1]]
        if "." in complete:
            return complete[: complete.index(".")]
        return None


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """One row of the admin ``status`` answer."""

    function: str
    total: int  # queued, running included
    running: int
    workers: int  # connected workers that can do it, busy ones included


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One row of the admin ``workers`` answer."""

    fd: int
    ip: str
    client_id: str
    functions: tuple[str, ...]


def parse_status(lines: list[str]) -> list[FunctionStatus]:
    """Rows of ``status``: ``FUNCTION\\tTOTAL\\tRUNNING\\tWORKERS``."""
    rows = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) != 4:
            raise ProtocolError(f"unexpected status line {line!r}")
        try:
            rows.append(FunctionStatus(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
        except ValueError:
            raise ProtocolError(f"unexpected status line {line!r}") from None
    return rows


def parse_workers(lines: list[str]) -> list[WorkerInfo]:
    """Rows of ``workers``: ``FD IP CLIENT-ID : FUNCTION ...`` (``FD IP CLIENT-ID :`` if none).

    The IP may be IPv6 (``::1``) and the client id may hold spaces, so the line is cut at the
    first two spaces and then at the last `` : ``.
    """
    rows = []
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) != 3:
            raise ProtocolError(f"unexpected workers line {line!r}")
        fd_text, ip, rest = parts
        if rest.endswith(" :") or rest == ":":
            client_id, tail = rest[:-2], ""
        else:
            client_id, sep, tail = rest.rpartition(" : ")
            if not sep:
                raise ProtocolError(f"unexpected workers line {line!r}")
        try:
            fd = int(fd_text)
        except ValueError:
            raise ProtocolError(f"unexpected workers line {line!r}") from None
        rows.append(WorkerInfo(fd, ip, client_id, tuple(tail.split())))
    return rows
