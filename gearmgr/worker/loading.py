"""Loading one worker file, in the process that runs it (a worker, or a validation fork):
``workers/reverse.py`` registers the function ``reverse``. The module defines either a callable
named ``reverse`` that takes the job, or a class named ``reverse`` whose ``run(self, job)`` is
called (one instance per process, kept across jobs). A file that does not load raises
:class:`WorkerLoadError`, one line naming the file and where it failed.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FunctionType
from typing import Any

from gearmgr.errors import GearmgrError, exception_text

Handler = Callable[[Any], Any]


class WorkerLoadError(GearmgrError):
    """A worker file could not be imported or does not define its function."""


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


def is_async(handler: Handler) -> bool:
    """Whether ``handler`` is an ``async def`` function (or a class's ``async def run``).

    A plain function (nearly every handler) is answered from its code's flags: inspect's
    functions, which a worker process would otherwise run only here, would each cost it the
    pages they write (their code's warm-up counters, their references) in its USS. A function
    marked by ``inspect.markcoroutinefunction`` (Python 3.12) goes the long way."""
    if type(handler) is FunctionType and not hasattr(handler, "_is_coroutine_marker"):
        return bool(handler.__code__.co_flags & inspect.CO_COROUTINE)
    call = type(handler).__call__ if not inspect.isroutine(handler) else None
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def check_concurrency(name: str, path: Path, handler: Handler, concurrency: int) -> None:
    """``concurrency`` above 1 needs an ``async def`` function: else a WorkerLoadError naming
    the key (a plain function runs one job at a time in its process)."""
    if concurrency > 1 and not is_async(handler):
        raise WorkerLoadError(
            f"functions.{name}.concurrency: {concurrency} needs an async def function"
            f" (or an async def run method); {name} in {path} is a plain def, which runs one"
            " job at a time (use concurrency: 1, or more processes)"
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
    text = exception_text(exc)
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exception_text(SyntaxError(f"{exc.msg} (line {exc.lineno})"))
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
