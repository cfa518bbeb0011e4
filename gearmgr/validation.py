"""Validating worker files in a throwaway fork, never in the supervisor: each file is imported
in a fork of its own against a deadline, and the results come back over a pipe as JSON lines.
:class:`Validation` is one such fork under way (the supervisor's loop waits for it in its
selector); :func:`validate` waits for the answer (``gearmgr check``, a blocking scan).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from gearmgr.children import reap, set_parent_death_signal, wait_status_text
from gearmgr.errors import one_line
from gearmgr.worker.loading import WorkerLoadError, check_concurrency, load_handler

REAP_TIMEOUT = 5.0  # seconds a validation fork may take to exit once it is done or told to


class Validation:
    """A throwaway fork importing worker files, under way.

    The fork imports each file in a fork of its own, against a deadline of its own
    (``timeout``), and writes each result as a JSON line as soon as it has it: a file that
    imports slowly is reported as such, and the others get their real results.

    The supervisor puts :attr:`fd` in its selector, calls :meth:`read` when it is readable and
    :meth:`results` once it says the fork is done (or :attr:`deadline` has passed, a backstop:
    ``timeout`` per file, plus a margin), so its loop goes on reaping and handling signals
    while a worker file takes its time to import. Whoever reaps :attr:`pid` first stores its
    wait status in :attr:`status`.
    """

    def __init__(
        self,
        files: dict[str, Path],
        timeout: float,
        in_child: Callable[[], None] | None,
        concurrency: Mapping[str, int] | None = None,
    ):
        self.files = files
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout * max(1, len(files)) + 2.0
        self.status: int | None = None
        self._chunks: list[bytes] = []
        self.fd, write_fd = os.pipe()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        try:
            self.pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(self.fd)
            os.close(write_fd)
            raise
        if self.pid == 0:  # the throwaway child
            code = 1
            try:
                os.close(self.fd)
                signal.set_wakeup_fd(-1)
                if in_child is not None:
                    in_child()
                os.dup2(2, 1)  # worker files that print must not reach the supervisor's stdout
                _validate_each(files, timeout, write_fd, concurrency or {})
                code = 0
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        os.set_blocking(self.fd, False)

    def read(self) -> bool:
        """Take what the fork wrote; True once it has closed its end (it is done)."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return False
            if not chunk:
                return True
            self._chunks.append(chunk)

    def wait(self) -> dict[str, str | None]:
        """Block until the fork is done (or :attr:`deadline` has passed): :meth:`results`."""
        while not self.read():
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            select.select([self.fd], [], [], left)
        return self.results()

    def results(self) -> dict[str, str | None]:
        """Name -> error text, or None if the file loads. Ends the fork if it is still running
        (it overran its deadline) and reaps it unless someone already did."""
        done = self.read()
        os.close(self.fd)
        self._end(None if done else signal.SIGKILL)
        found: dict[str, str | None] = {}
        for line in b"".join(self._chunks).splitlines():
            try:
                name, error = json.loads(line)
            except ValueError:
                continue  # the last line, cut short by a kill
            found[str(name)] = None if error is None else one_line(str(error), 2000)
        for name, path in self.files.items():
            if name not in found:
                how = "?" if self.status is None else wait_status_text(self.status)
                found[name] = (
                    f"{path}: importing it killed the process ({how})"
                    if done
                    else f"{path}: importing it did not finish in {self.timeout:g}s"
                )
        return found

    def cancel(self) -> None:
        """Stop the fork and forget it (the supervisor is stopping)."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._end(signal.SIGKILL)

    def _end(self, sig: int | None) -> None:
        if self.status is None:
            self.status = reap(self.pid, REAP_TIMEOUT, sig)


def _validate_each(
    files: dict[str, Path], timeout: float, out_fd: int, concurrency: Mapping[str, int]
) -> None:
    """In the validation fork: import each file in a fork of its own, killed after
    ``timeout``; write ``[name, error or null]`` as a JSON line to ``out_fd`` for each."""
    for name, path in files.items():
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                os.setpgid(0, 0)  # what the import starts goes with it
                set_parent_death_signal(signal.SIGKILL)
                found = _import_one(name, path, concurrency.get(name, 1))
                _write_all(write_fd, json.dumps(found).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        chunks, finished = [], False
        deadline = time.monotonic() + timeout
        while not finished:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                break
            chunk = os.read(read_fd, 65536)
            finished = not chunk
            chunks.append(chunk)
        os.close(read_fd)
        status = reap(pid, REAP_TIMEOUT if finished else 0)
        try:  # helpers the import started (a subprocess at import time) end with it
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        error: str | None
        if not finished:
            error = f"{path}: importing it did not finish in {timeout:g}s"
        else:
            try:
                error = json.loads(b"".join(chunks))
            except ValueError:
                how = "?" if status is None else wait_status_text(status)
                error = f"{path}: importing it killed the process ({how})"
        _write_all(out_fd, json.dumps([name, error]).encode() + b"\n")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _import_one(name: str, path: Path, concurrency: int) -> str | None:
    try:
        check_concurrency(name, path, load_handler(name, path), concurrency)
    except WorkerLoadError as exc:
        return str(exc)
    return None


def validate(
    files: dict[str, Path],
    timeout: float = 20.0,
    in_child: Callable[[], None] | None = None,
    concurrency: Mapping[str, int] | None = None,
) -> dict[str, str | None]:
    """Import each worker file in a throwaway forked process, each against a deadline of its
    own (``timeout``): name -> error text, or None.

    The supervisor never imports worker code itself: the fork does, reports through a pipe and
    exits, so a file that hangs, kills the interpreter or leaves state behind fails validation
    instead of touching the supervisor. A fork rather than a new interpreter: it costs about a
    millisecond instead of fifty, and needs no access to the Python executable after a
    privilege drop. ``in_child`` runs first in the fork: the supervisor closes its own
    sockets and files there, so nothing the import starts can hold them. This waits for the
    answer; the supervisor's loop uses :class:`Validation` directly so as not to wait.
    ``concurrency``: function -> its ``concurrency`` key; above 1, a plain ``def`` fails.
    """
    if not files:
        return {}
    return Validation(files, timeout, in_child, concurrency).wait()


_BLOCKED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
