"""The reload/scan sequence as a small state machine; the arbiter does the work it asks for.

A reload (HUP, ``gearmgr reload``) or a code change (auto_reload) rescans the worker folders
and validates the files in a throwaway fork that the loop waits on through its selector. One
scan at a time: what comes meanwhile is remembered (a reload outranks a code change) and run
once the scan is over::

    IDLE --request--> SCANNING --finished--> IDLE
                         |   ^                  (then the remembered request, if any)
                 request |   | finished
                         v   |
                    RESCAN_PENDING

``gearmgr reload`` waits for the outcome of its reload: the waiters are answered once the
outcome is known (applied, refused, or the supervisor stopping).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Outcome = dict[str, object]
S = TypeVar("S")


class ReloadState(enum.Enum):
    IDLE = "idle"
    SCANNING = "scanning"
    RESCAN_PENDING = "rescan_pending"


class Kind(enum.Enum):
    RELOAD = "reload"  # config and code: HUP, `gearmgr reload`
    CODE = "code"  # worker files changed (auto_reload)


class ReloadSequence(Generic[S]):
    """``S`` is the arbiter's scan in progress (what it waits on)."""

    def __init__(self) -> None:
        self.state = ReloadState.IDLE
        self.scan: S | None = None
        self.then: Callable[[set[str]], None] | None = None
        self.pending: Kind | None = None
        self._waiters: list[Callable[[Outcome], Any]] = []

    def request(self, kind: Kind) -> bool:
        """A reload or code change is asked for; True if it may start now, else it is
        remembered for when the scan under way is over."""
        if self.state is ReloadState.IDLE:
            return True
        self.state = ReloadState.RESCAN_PENDING
        if kind is Kind.RELOAD or self.pending is None:
            self.pending = kind
        return False

    def scanning(self, scan: S, then: Callable[[set[str]], None]) -> None:
        """The arbiter started a scan that waits on a validation fork."""
        if self.state is not ReloadState.IDLE:
            raise RuntimeError("one check of worker files at a time")
        self.state = ReloadState.SCANNING
        self.scan, self.then = scan, then

    def finished(self) -> tuple[S, Callable[[set[str]], None], Kind | None]:
        """The scan is over: back to IDLE. Returns the scan, what to do with its result and
        the request that came meanwhile (to run next), if any."""
        if self.scan is None or self.then is None:
            raise RuntimeError("no scan under way")
        scan, then, pending = self.scan, self.then, self.pending
        self.state, self.scan, self.then, self.pending = ReloadState.IDLE, None, None, None
        return scan, then, pending

    def cancel(self) -> S | None:
        """The supervisor stops: forget the scan and what was pending; answer the waiters."""
        scan = self.scan
        self.state, self.scan, self.then, self.pending = ReloadState.IDLE, None, None, None
        self.done({"ok": False, "applied": False, "error": "the supervisor is stopping"})
        return scan

    def wait(self, answer: Callable[[Outcome], Any]) -> None:
        """A `gearmgr reload` client waits for the outcome."""
        self._waiters.append(answer)

    def done(self, outcome: Outcome) -> None:
        """Tell the waiting clients what came of it."""
        waiters, self._waiters = self._waiters, []
        for answer in waiters:
            answer(outcome)
