"""Child processes, from both sides: in the child, the signal it gets when its parent dies; in
the parent, waiting for a child against a deadline (then SIGKILL) and its wait status in words.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

PR_SET_PDEATHSIG = 1


#: Signals whose default action would end the supervisor at once, without stopping its
#: workers or removing its socket: a stray one is logged and otherwise ignored.
STRAY_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT")
    if hasattr(signal, name)
)


#: The C functions under the ``signal`` module's wrappers, which turn the handlers and signals
#: they return into enum members (Enum's lookup, an exception raised and caught for a handler
#: that is a function). A forked worker would run that Python code only at its start, and
#: every page it writes there is one more page of the worker's own (its USS): the worker's
#: start goes through set_handler and set_mask instead (docs/benchmarks.md).
_signal: Any = importlib.import_module("_signal")


def set_handler(sig: int, handler: Callable[..., object] | int) -> None:
    """``signal.signal(sig, handler)``, without the old handler back."""
    _signal.signal(int(sig), int(handler) if isinstance(handler, int) else handler)


def set_mask(how: int, signals: Iterable[int]) -> None:
    """``signal.pthread_sigmask(how, signals)``, without the old mask back."""
    _signal.pthread_sigmask(int(how), signals)


_libc: ctypes.CDLL | None = None


def _prctl(option: int, value: int) -> int:
    """prctl(2) through libc; OSError or AttributeError where there is none. The handle is
    made once, by the supervisor before it forks: a worker uses that one rather than building
    ctypes' classes again (each costs its memory pages)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    result: int = _libc.prctl(option, value, 0, 0, 0)
    return result


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (prctl). Must be called
    after any privilege drop, which clears it."""
    try:
        _prctl(PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):
        pass  # not Linux: the worker notices at its next getppid() check


def reap(pid: int, timeout: float, sig: int | None = None) -> int | None:
    """Send ``sig`` (when given) to the child ``pid``, wait up to ``timeout`` seconds for it to
    exit, else SIGKILL it; reap it either way. Its wait status, or None if someone else reaped
    it. Sleeps on a pidfd (on Linux) rather than polling."""
    if sig is not None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    pidfd = _pidfd(pid)
    try:
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                return None
            if done:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if pidfd is None:
                time.sleep(min(left, 0.01))
            else:
                select.select([pidfd], [], [], left)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def wait_status_text(status: int) -> str:
    """A wait status in words: ``exit status 3``, ``killed by SIGKILL``."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Ask Linux to make this process the reaper of its orphaned descendants (prctl): what
    a job forks and leaves behind, even in a session or process group of its own, then stays
    below this process instead of going to init. False where that is not available."""
    try:
        return _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        return False


def children_of_self() -> set[int]:
    """The pids of this process's children (``/proc/self/task/*/children``, else a scan of
    /proc)."""
    found: set[int] = set()
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                found.update(int(p) for p in f.read().split())
        return found
    except (OSError, ValueError):
        pass
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[1]) == me:
                    found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def end_strays(known: set[int]) -> list[int]:
    """SIGKILL every child of this process that is not in ``known``: a subreaper's adopted
    orphans, left behind by a process that is gone. Returns their pids (reaped later, like any
    child)."""
    strays = sorted(children_of_self() - known)
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return strays
