"""What a forked worker process does before it serves jobs. Runs in the child only.

Reset the supervisor's signal state, make sure the process dies with its parent, name the
process, import the worker files (a file that fails is logged with its exception and left
out; the process serves the others), then hand over to the worker loop.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from gearmgr.children import (
    STRAY_SIGNALS,
    become_subreaper,
    set_handler,
    set_parent_death_signal,
)
from gearmgr.discovery import WorkerLoadError, load_handler
from gearmgr.errors import ExitCode
from gearmgr.failures.quarantine import QuarantineBoard
from gearmgr.logs import redirect_stdio, set_label
from gearmgr.scoreboard import REASON_NO_FUNCTIONS, Scoreboard
from gearmgr.worker.aio import AsyncWorker, blocking
from gearmgr.worker.loading import check_concurrency, is_async
from gearmgr.worker.loop import Worker
from gearmgr.worker.spec import WorkerSpec

log = logging.getLogger("gearmgr.worker")
IMPORT_TIMEOUT = 60  # seconds a worker process may take to import its worker files


def reset_signals() -> None:
    """Undo what the supervisor installed: default dispositions, no wakeup fd."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, *STRAY_SIGNALS):
        set_handler(sig, signal.SIG_DFL)
    set_handler(signal.SIGINT, signal.SIG_IGN)
    set_handler(signal.SIGUSR1, signal.SIG_IGN)  # a log rotation while importing: harmless
    set_handler(signal.SIGTERM, signal.SIG_DFL)


def set_title(title: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except ImportError:  # pragma: no cover - a declared dependency
        pass


def run_child(
    spec: WorkerSpec,
    scoreboard: Scoreboard,
    parent_pid: int,
    quarantine: QuarantineBoard | None = None,
) -> int:
    """Load the worker files of ``spec`` and serve; returns the process's exit code."""
    set_parent_death_signal()
    if os.getppid() != parent_pid:
        return 0
    # Orphans of this process's jobs (a daemon, a setsid helper) stay below it while it lives,
    # and go to the supervisor, which ends them, when it exits.
    become_subreaper()
    names = ",".join(spec.functions)
    redirect_stdio()  # print() and tracebacks of worker code go where the log goes
    set_label(f"worker {names}")
    set_title(f"gearmgr: worker {names} [starting]")
    handlers = {}
    # A worker file whose import hangs must not leave a process that never registers: SIGALRM's
    # default action ends it, the supervisor logs the signal and backs the slot off.
    signal.alarm(IMPORT_TIMEOUT)
    for name, path in spec.files:
        try:
            handlers[name] = load_handler(name, path)
            check_concurrency(name, path, handlers[name], spec.concurrency)
        except WorkerLoadError as exc:
            handlers.pop(name, None)
            log.error("function %s left out of %s: %s", name, spec.key, exc)
    signal.alarm(0)
    slot = spec.slot
    if not handlers:
        scoreboard.set_exit_reason(slot, REASON_NO_FUNCTIONS)
        return ExitCode.NO_FUNCTIONS
    worker: Worker | AsyncWorker
    settings: dict[str, Any] = {
        "client_id": spec.client_id(),
        "timeouts": dict(spec.timeouts),
        "max_jobs": spec.max_jobs,
        "max_lifetime": spec.max_lifetime,
        "max_memory": spec.max_memory,
        "scoreboard": scoreboard,
        "slot": slot,
        "parent_pid": parent_pid,
        "title": set_title,
        "counters": list(spec.functions),
        "stop_on_sigint": False,
    }
    asyncs = {n for n, h in handlers.items() if is_async(h)}
    if len(handlers) == 1 and asyncs:
        # a dedicated process of an async function: its jobs on one event loop, up to its places
        worker = AsyncWorker(
            spec.servers,
            handlers,
            concurrency=spec.concurrency,
            records=spec.records,
            **settings,
        )
    else:  # the sync loop; an async function there runs one job at a time
        sync = {n: blocking(h) if n in asyncs else h for n, h in handlers.items()}
        worker = Worker(
            spec.servers,
            sync,  # type: ignore[arg-type]
            records=spec.records,
            quarantine=quarantine,
            **settings,
        )
    code = worker.run()
    if os.getppid() != parent_pid:  # orphaned: nobody will end what the jobs forked but us
        try:
            os.killpg(0, signal.SIGKILL)
        except OSError:
            pass
    return code
