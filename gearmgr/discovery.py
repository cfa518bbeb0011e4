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
    sockets and files there, so nothing the import starts can hold them.
    """
    if not files:
        return {}
    read_fd, write_fd = os.pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    pid = os.fork()
    if pid == 0:  # the throwaway child
        code = 1
        try:
            os.close(read_fd)
            signal.set_wakeup_fd(-1)
            if in_child is not None:
                in_child()
            os.dup2(2, 1)  # worker files that print must not reach the supervisor's stdout
            found: dict[str, str | None] = {}
            for name, path in files.items():
                try:
                    load_handler(name, path)
                    found[name] = None
                except WorkerLoadError as exc:
                    found[name] = str(exc)
            data = json.dumps(found).encode()
            while data:
                data = data[os.write(write_fd, data) :]
            code = 0
        finally:
            os._exit(code)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(write_fd)
    try:
        payload = _read_all(read_fd, timeout)
    finally:
        os.close(read_fd)
    status = _wait(pid, timeout=0 if payload is None else 5.0)
    if payload is None:
        return {n: f"{p}: importing it did not finish in {timeout:g}s" for n, p in files.items()}
    try:
        results: dict[str, str | None] = json.loads(payload)
    except ValueError:
        how = f"exit status {os.waitstatus_to_exitcode(status)}" if status is not None else "?"
        return {n: f"{p}: importing it killed the process ({how})" for n, p in files.items()}
    return results


_BLOCKED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


def _read_all(fd: int, timeout: float) -> bytes | None:
    """Everything written to ``fd`` until EOF, or None if that takes longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _wait(pid: int, timeout: float) -> int | None:
    """Reap the validation child; kill it if it outstays ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.005)
