"""A small client for gearmand's text admin protocol (``status``, ``workers``, ``version``...).

One connection per :class:`Admin`, opened on first use and reopened after any error. Errors are
those of :mod:`gearmgr.client`: :class:`ServerUnavailable` when the server cannot be reached or the
connection breaks, :class:`GearmanError` for an ``ERR`` answer or an answer that does not parse.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

from gearmgr.units import parse_address
from gearmgr.wire.client import GearmanError, ServerUnavailable
from gearmgr.wire.protocol import (
    AdminDecoder,
    FunctionStatus,
    ProtocolError,
    WorkerInfo,
    parse_status,
    parse_workers,
)

__all__ = ["Admin", "FunctionStatus", "WorkerInfo"]

R = TypeVar("R")


class Admin:
    """Admin commands to one job server (``HOST:PORT``); ``timeout`` bounds each command."""

    def __init__(self, server: str, timeout: float = 5.0) -> None:
        self.server = server
        self.timeout = timeout
        self._address = parse_address(server)
        self._sock: socket.socket | None = None

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (reopened if the object is used again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def status(self) -> list[FunctionStatus]:
        """Per function: jobs queued (running ones included), running, and capable workers."""
        return self._parse(parse_status, self.command("status", expect_list=True))

    def workers(self) -> list[WorkerInfo]:
        """Every connection (workers and clients): fd, ip, client id and registered functions."""
        return self._parse(parse_workers, self.command("workers", expect_list=True))

    def version(self) -> str:
        """The server's version, e.g. ``1.1.20+ds``."""
        return self._ok(self.command("version", expect_list=False)[0])

    def getpid(self) -> int:
        """The server's process id."""
        answer = self._ok(self.command("getpid", expect_list=False)[0])
        try:
            return int(answer)
        except ValueError:
            raise GearmanError(f"{self.server}: unexpected getpid answer {answer!r}") from None

    def command(self, line: str, *, expect_list: bool) -> list[str]:
        """Send one command line; return the answer's lines (without the final ``.``)."""
        decoder = AdminDecoder(expect_list)
        try:
            sock = self._connect()
            sock.sendall(line.encode("utf-8") + b"\n")
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("connection closed by the server")
                answer = decoder.feed(chunk)
                if answer is not None:
                    return answer
        except OSError as exc:
            self.close()
            raise ServerUnavailable({self.server: str(exc) or type(exc).__name__}) from exc
        except ProtocolError as exc:
            self.close()
            raise GearmanError(f"{self.server}: {exc}") from exc

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self.timeout)
        return self._sock

    def _ok(self, line: str) -> str:
        if not line.startswith("OK"):
            raise GearmanError(f"{self.server}: unexpected answer {line!r}")
        return line[2:].strip()

    def _parse(self, parser: Callable[[list[str]], list[R]], lines: list[str]) -> list[R]:
        try:
            return parser(lines)
        except ProtocolError as exc:
            raise GearmanError(f"{self.server}: {exc}") from exc
