"""Worker files: finding them, loading them (in a worker process) and validating them (in a
throwaway subprocess, never in the supervisor).

``workers/reverse.py`` registers the function ``reverse``. The module defines either a callable
named ``reverse`` that takes the job, or a class named ``reverse`` whose ``run(self, job)`` is
called (one instance per process, kept across jobs).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
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


def validate(files: dict[str, Path], timeout: float = 60.0) -> dict[str, str | None]:
    """Import each worker file in a throwaway subprocess: name -> error text, or None if sound.

    The supervisor never imports worker code itself; a file that hangs or kills the interpreter
    fails validation instead of taking anything else down.
    """
    if not files:
        return {}
    payload = json.dumps({name: str(path) for name, path in files.items()})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gearmgr.discovery"],
            input=payload.encode(),
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {
            name: f"{path}: import did not finish in {timeout:g}s" for name, path in files.items()
        }
    try:
        results: dict[str, str | None] = json.loads(proc.stdout.decode().splitlines()[-1])
    except (ValueError, IndexError):
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = err[-1] if err else f"exit status {proc.returncode}"
        return {name: f"validation crashed: {reason}" for name in files}
    return results


def _validate_main() -> None:
    """Entry point of the validation subprocess: names and paths as JSON on stdin."""
    files = json.loads(sys.stdin.read())
    results: dict[str, str | None] = {}
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # worker files that print must not corrupt the answer
    for name, path in files.items():
        try:
            load_handler(name, Path(path))
            results[name] = None
        except WorkerLoadError as exc:
            results[name] = str(exc)
    sys.stdout = real_stdout
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    _validate_main()
