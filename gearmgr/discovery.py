"""Worker files: finding them in the worker folders (:func:`discover`).

``workers/reverse.py`` registers the function ``reverse``. Loading one file is
:mod:`gearmgr.worker.loading` (in the process that runs it); validating files in a throwaway
fork is :mod:`gearmgr.validation`. Their names are importable from here too, as before:
``from gearmgr.discovery import load_handler`` (docs/workers.md), ``WorkerLoadError``,
``Validation``, ``validate``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gearmgr.validation import Validation, validate
from gearmgr.worker.loading import Handler, WorkerLoadError, describe_exception, load_handler

__all__ = [
    "Discovery",
    "Handler",
    "Validation",
    "WorkerLoadError",
    "describe_exception",
    "discover",
    "load_handler",
    "validate",
]


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
                problems.append(f"{show(path)}: skipped, {name!r} is not a valid function name")
                continue
            if (keep and name not in keep) or name in drop:
                continue
            if name in files:
                problems.append(
                    f"{show(path)}: skipped, function {name!r} is already in {show(files[name])}"
                )
                continue
            try:
                files[name] = path.resolve(strict=True)
            except (OSError, RuntimeError) as exc:  # a symlink loop, a dangling link
                why = "a symlink loop" if isinstance(exc, RuntimeError) else exc.strerror
                problems.append(f"{show(path)}: skipped, it cannot be read ({why})")
    return Discovery(files, tuple(problems))


def show(path: Path) -> str:
    """A path for a log line or a message: a name that is not UTF-8 shows escaped, never
    breaks the log (its bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
