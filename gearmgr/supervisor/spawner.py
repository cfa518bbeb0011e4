"""The one way the supervisor forks: a worker process, or a throwaway helper (the probe's
resolver). Signals are blocked across fork() so that no handler of the supervisor runs in the
child before it has reset them; the child gets its own process group (set in the child and in
the parent, so no signal to the group can come too early) so that whatever it forks goes with
it; stdin is /dev/null, not the terminal's (a background group reading it would stop).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
from collections.abc import Callable, Sequence
from typing import NoReturn

from gearmgr.children import STRAY_SIGNALS, set_mask
from gearmgr.logs import flush_logs

log = logging.getLogger("gearmgr.supervisor")

#: The signals the supervisor handles (recorded for its loop); blocked across every fork.
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


def stdin_to_devnull() -> None:
    """Runs in a child, right after fork."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def clear_type_cache() -> None:
    """Empty CPython's type attribute cache (``PyType_ClearCache``; the types keep their
    version tags, so nothing is slower but a miss per lookup until it fills again).

    The cache holds a reference to each attribute name it has cached. A lookup that misses
    in a forked worker replaces an entry, and drops the reference to the name the supervisor
    had left there: a write to that string's page, which becomes the worker's own. Emptied
    just before the forks, the entries that the workers replace hold no names of the
    supervisor's (docs/benchmarks.md)."""
    try:
        ctypes.pythonapi.PyType_ClearCache()
    except AttributeError:  # not CPython
        pass


def fork(
    run: Callable[[], int],
    *,
    what: str,
    in_child: Callable[[], None] | None = None,
    own_group: bool = True,
) -> int:
    """Fork a child that sets itself up, calls ``in_child`` (the supervisor's own descriptors
    and signal state dropped), then ``run()``, and exits with what it returns (1 if it raises:
    logged as ``what`` crashed). Returns the child's pid; raises OSError if fork() fails."""
    pid = fork_all([(run, what)], in_child=in_child, own_group=own_group)[0]
    if isinstance(pid, OSError):
        raise pid
    return pid


def fork_all(
    children: Sequence[tuple[Callable[[], int], str]],
    *,
    in_child: Callable[[], None] | None = None,
    own_group: bool = True,
) -> list[int | OSError]:
    """:func:`fork` for each ``(run, what)`` of ``children``, back to back; returns each
    child's pid, or the OSError its fork() raised.

    The logs are flushed and the signals blocked once, and nothing runs between two fork()
    calls but this loop: a page that the supervisor writes after a fork stays, in its old
    version, with the children forked before, and becomes private to each of them when it
    was written again between their forks (each then holds its own version). What the
    supervisor does between forks is thus paid again in every worker's USS
    (docs/benchmarks.md)."""
    flush_logs()
    clear_type_cache()
    # The young generations collected: objects the supervisor made lately move to the oldest
    # one, whose list the workers' own young collections never walk (a walk writes every
    # object's GC header: their pages would become each worker's).
    gc.collect(1)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS + STRAY_SIGNALS)
    pids: list[int | OSError] = [0] * len(children)
    try:
        for i, (run, what) in enumerate(children):
            try:
                pid = os.fork()
            except OSError as exc:
                pids[i] = exc
                continue
            if pid == 0:  # the child: never returns
                _child(run, what, in_child, own_group, mask)
            pids[i] = pid
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if own_group:
        for each in pids:
            if isinstance(each, int):
                try:
                    os.setpgid(each, each)
                except OSError:
                    pass  # it did so itself already, or is gone already
    return pids


def _child(
    run: Callable[[], int],
    what: str,
    in_child: Callable[[], None] | None,
    own_group: bool,
    mask: set[int | signal.Signals],
) -> NoReturn:
    """The forked child: sets itself up, runs, exits with what ``run`` returns."""
    code = 1
    try:
        if own_group:
            os.setpgid(0, 0)
        stdin_to_devnull()
        if in_child is not None:
            in_child()
        set_mask(signal.SIG_SETMASK, mask)
        code = run()
    except BaseException:
        log.exception("%s crashed", what)
    finally:
        flush_logs()
        os._exit(code)


def describe_exit(status: int, killed_by_us: bool = False) -> str:
    """A wait status in words: 'exited with status 3', 'killed by SIGKILL'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        text = f"killed by {name}"
        if os.WCOREDUMP(status):
            text += " (core dumped)"
        if sig == signal.SIGKILL and not killed_by_us:
            text += " (perhaps out of memory?)"
        return text
    return f"exited with status {os.WEXITSTATUS(status)}"
