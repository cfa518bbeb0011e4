"""The pid file: written and locked while the supervisor runs, removed when it exits.

The lock (``lockf``) tells a second instance that one is already running, even when a crash
left the file behind: a stale file is not locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from gearmgr.errors import FatalError


class PidFileError(FatalError):
    """The pid file cannot be written, or another instance holds it."""


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, pid: int) -> None:
        path = self.path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PidFileError(f"pid_file {path}: {exc.strerror}") from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise PidFileError(
                    f"pid_file {path} is locked: gearmgr is already running (pid {other or '?'})"
                ) from exc
            raise PidFileError(f"pid_file {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{pid}\n".encode())
        self.fd = fd

    def close_in_child(self) -> None:
        """A forked worker must not hold the lock's fd."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
