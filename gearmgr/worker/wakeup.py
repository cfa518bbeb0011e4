"""The worker's signals: handlers that only record, and a pipe that wakes its ``poll``.

TERM asks for a graceful stop; INT does the same when the worker runs on its own and is
ignored under a supervisor (which handles Ctrl-C for the whole group); USR1 reopens the log
file. The supervisor's death arrives as TERM too (PR_SET_PDEATHSIG, set in child.py).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from gearmgr.children import set_handler


class Wakeup:
    """A non-blocking pipe: its read end sits in the loop's poll set, signals write to it."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)
        os.set_blocking(self.r, False)

    def install(
        self, stop: Callable[[], None], reopen: Callable[[], None], stop_on_sigint: bool
    ) -> None:
        """Route TERM (and INT on its own) to ``stop``, USR1 to ``reopen``; main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return
        set_handler(signal.SIGTERM, lambda *_: stop())
        set_handler(signal.SIGUSR1, lambda *_: reopen())
        # Under a supervisor, Ctrl-C in a terminal reaches the whole process group: the
        # supervisor decides, the workers ignore it. On its own, Ctrl-C stops a worker gracefully.
        set_handler(signal.SIGINT, (lambda *_: stop()) if stop_on_sigint else signal.SIG_IGN)
        signal.set_wakeup_fd(self.w, warn_on_full_buffer=False)

    def wake(self) -> None:
        try:
            os.write(self.w, b"\0")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while os.read(self.r, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)
