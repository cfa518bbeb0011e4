"""Worker files: finding them, loading them (in a worker process) and validating them (in a
throwaway subprocess, never in the supervisor).

``workers/reverse.py`` registers the function ``reverse``. The module defines either a callable
named ``reverse`` that takes the job, or a class named ``reverse`` whose ``run(self, job)`` is
called (one instance per process, kept across jobs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Handler = Callable[[Any], Any]


class WorkerLoadError(Exception):
    """A worker file could not be imported or does not define its function."""


@dataclass(frozen=True)
class Discovery:
    """What the worker folders hold: function name -> file, plus what was skipped and why."""

    files: dict[str, Path]
    problems: tuple[str, ...] = ()


def discover(
    dirs: Iterable[Path], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Discovery:
    """Find ``*.py`` worker files. The first folder that holds a name wins; later duplicates,
    files whose name is not a valid function name, and missing folders are reported."""
    keep = set(include)
    drop = set(exclude)
    files: dict[str, Path] = {}
    problems: list[str] = []
    for folder in dirs:
        if not folder.is_dir():
            problems.append(f"{folder}: worker folder does not exist")
            continue
        for path in sorted(folder.glob("*.py")):
            name = path.stem
            if name.startswith(("_", ".")):
                continue
            if not name.isidentifier():
                problems.append(f"{path}: skipped, {name!r} is not a valid function name")
                continue
            if (keep and name not in keep) or name in drop:
                continue
            if name in files:
                problems.append(f"{path}: skipped, function {name!r} is already in {files[name]}")
                continue
            files[name] = path.resolve()
    return Discovery(files, tuple(problems))


def load_handler(name: str, path: Path) -> Handler:
    """Import ``path`` and return the callable that runs a job of function ``name``.

    Runs in the worker process (or a validation subprocess): it executes the file's code.
    """
    module_name = f"gearmgr_workers.{name}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise WorkerLoadError(f"{path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except WorkerLoadError:
        raise
    except BaseException as exc:  # a worker file may raise anything, SystemExit included
        sys.modules.pop(module_name, None)
        raise WorkerLoadError(f"{path}: {describe_exception(exc)}") from exc
    target = getattr(module, name, None)
    if isinstance(target, type):
        run = getattr(target, "run", None)
        if not callable(run):
            raise WorkerLoadError(f"{path}: class {name} has no run(self, job) method")
        try:
            instance = target()
        except BaseException as exc:
            raise WorkerLoadError(f"{path}: {name}() raised {describe_exception(exc)}") from exc
        return instance.run  # type: ignore[no-any-return]
    if callable(target):
        return target  # type: ignore[no-any-return]
    raise WorkerLoadError(f"{path}: defines no function or class named {name!r}")


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` with the innermost frame of the traceback inside the worker file."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno})"
    return text


class Validation:
    """A throwaway fork importing worker files, under way.

    The supervisor puts :attr:`fd` in its selector, calls :meth:`read` when it is readable and
    :meth:`results` once it says the fork is done (or :attr:`deadline` has passed), so its loop
    goes on reaping and handling signals while a worker file takes its time to import. Whoever
    reaps :attr:`pid` first stores its wait status in :attr:`status`.
    """

    def __init__(self, files: dict[str, Path], timeout: float, in_child: Callable[[], None] | None):
        self.files = files
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
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
                data = json.dumps(_import_all(files)).encode()
                while data:
                    data = data[os.write(write_fd, data) :]
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

    def results(self) -> dict[str, str | None]:
        """Name -> error text, or None if the file loads. Ends the fork if it is still running
        (it overran its deadline) and reaps it unless someone already did."""
        done = self.read()
        os.close(self.fd)
        if not done:
            self._end(signal.SIGKILL)
            return {
                n: f"{p}: importing it did not finish in {self.timeout:g}s"
                for n, p in self.files.items()
            }
        self._end(None)
        try:
            found: dict[str, str | None] = json.loads(b"".join(self._chunks))
        except ValueError:
            how = (
                "?"
                if self.status is None
                else f"exit status {os.waitstatus_to_exitcode(self.status)}"
            )
            return {
                n: f"{p}: importing it killed the process ({how})" for n, p in self.files.items()
            }
        return found

    def cancel(self) -> None:
        """Stop the fork and forget it (the supervisor is stopping)."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._end(signal.SIGKILL)

    def _end(self, sig: int | None) -> None:
        if self.status is not None:
            return
        if sig is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5.0
        while True:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                return
            if done:
                self.status = status
                return
            if time.monotonic() >= deadline:
                os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.002)


def _import_all(files: dict[str, Path]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, path in files.items():
        try:
            load_handler(name, path)
            found[name] = None
        except WorkerLoadError as exc:
            found[name] = str(exc)
    return found


def validate(
    files: dict[str, Path],
    timeout: float = 20.0,
    in_child: Callable[[], None] | None = None,
) -> dict[str, str | None]:
    """Import each worker file in a throwaway forked process: name -> error text, or None.

    The supervisor never imports worker code itself: the fork does, reports through a pipe and
    exits, so a file that hangs, kills the interpreter or leaves state behind fails validation
    instead of touching the supervisor. A fork rather than a new interpreter: it costs about a
    millisecond instead of fifty, and needs no access to the Python executable after a
    privilege drop. ``in_child`` runs first in the fork: the supervisor closes its own
    sockets and files there, so nothing the import starts can hold them. This waits for the
    answer; the supervisor's loop uses :class:`Validation` directly so as not to wait.
    """
    if not files:
        return {}
    job = Validation(files, timeout, in_child)
    while not job.read():
        left = job.deadline - time.monotonic()
        if left <= 0:
            break
        select.select([job.fd], [], [], left)
    return job.results()


_BLOCKED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
