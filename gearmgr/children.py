"""Child processes, from both sides: in the child, the signal it gets when its parent dies; in
the parent, waiting for a child against a deadline (then SIGKILL) and its wait status in words.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import time

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (prctl). Must be called
    after any privilege drop, which clears it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the worker's parent check in its idle loop still applies


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
