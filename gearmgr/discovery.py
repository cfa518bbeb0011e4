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

from gearmgr.errors import GearmgrError

Handler = Callable[[Any], Any]


class WorkerLoadError(GearmgrError):
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
        raise WorkerLoadError(f"{path}: {describe_exception(exc, path)}") from exc
    target = getattr(module, name, None)
    if isinstance(target, type):
        run = getattr(target, "run", None)
        if not callable(run):
            raise WorkerLoadError(f"{path}: class {name} has no run(self, job) method")
        try:
            instance = target()
        except BaseException as exc:
            where = _definition_line(target, path)
            raise WorkerLoadError(
                f"{path}: {name}() raised {describe_exception(exc, path, where)}"
            ) from exc
        return instance.run  # type: ignore[no-any-return]
    if callable(target):
        return target  # type: ignore[no-any-return]
    if target is not None:
        raise WorkerLoadError(
            f"{path}: {name} is a {type(target).__name__}, not a function or class taking the job"
        )
    raise WorkerLoadError(
        f"{path}: defines no function or class named {name!r}; {_defined(module, module_name)}"
    )


MAX_LISTED = 10  # callables named in a "defines no function named ..." error


def _defined(module: Any, module_name: str) -> str:
    """What the module defines instead, for the error: its own top-level functions and
    classes (not what it imported), at most MAX_LISTED of them."""
    names = sorted(
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and callable(obj)
        and getattr(obj, "__module__", None) == module_name
    )
    if not names:
        return "it defines no function or class at all"
    more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"it defines: {', '.join(names[:MAX_LISTED])}{more}"


def _definition_line(cls: type, path: Path) -> int | None:
    """The line of ``cls.__init__`` (else of the class) in ``path``, when it is defined there."""
    init = vars(cls).get("__init__")
    code = getattr(init, "__code__", None)
    if code is not None and Path(code.co_filename) == path:
        return int(code.co_firstlineno)
    try:
        import inspect

        if Path(inspect.getfile(cls)) == path:
            return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        pass
    return None


def describe_exception(
    exc: BaseException, path: Path | None = None, line: int | None = None
) -> str:
    """``Type: message (at FILE:LINE)``: the innermost frame of the traceback that is in the
    worker file ``path`` (else ``line`` of it, else the innermost frame)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        mine = [f for f in frames if Path(f.filename) == path]
        if mine:
            return f"{text} (at {path.name}:{mine[-1].lineno})"
        if line is not None:
            return f"{text} (at {path.name}:{line})"
    if frames:
        last = frames[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno})"
    return text


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

    def __init__(self, files: dict[str, Path], timeout: float, in_child: Callable[[], None] | None):
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
                _validate_each(files, timeout, write_fd)
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
        self._end(None if done else signal.SIGKILL)
        found: dict[str, str | None] = {}
        for line in b"".join(self._chunks).splitlines():
            try:
                name, error = json.loads(line)
            except ValueError:
                continue  # the last line, cut short by a kill
            found[str(name)] = error
        for name, path in self.files.items():
            if name not in found:
                how = "?" if self.status is None else _wait_status(self.status)
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


def _wait_status(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _validate_each(files: dict[str, Path], timeout: float, out_fd: int) -> None:
    """In the validation fork: import each file in a fork of its own, killed after
    ``timeout``; write ``[name, error or null]`` as a JSON line to ``out_fd`` for each."""
    from gearmgr.worker.child import set_parent_death_signal

    for name, path in files.items():
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                set_parent_death_signal(signal.SIGKILL)
                _write_all(write_fd, json.dumps(_import_one(name, path)).encode())
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
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        error: str | None
        if not finished:
            error = f"{path}: importing it did not finish in {timeout:g}s"
        else:
            try:
                error = json.loads(b"".join(chunks))
            except ValueError:
                error = f"{path}: importing it killed the process ({_wait_status(status)})"
        _write_all(out_fd, json.dumps([name, error]).encode() + b"\n")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _import_one(name: str, path: Path) -> str | None:
    try:
        load_handler(name, path)
    except WorkerLoadError as exc:
        return str(exc)
    return None


def validate(
    files: dict[str, Path],
    timeout: float = 20.0,
    in_child: Callable[[], None] | None = None,
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
