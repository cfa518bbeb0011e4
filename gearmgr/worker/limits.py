"""What makes a worker process leave between jobs: max_jobs, max_lifetime, max_memory."""

from __future__ import annotations

import logging
import os

from gearmgr import scoreboard as sb
from gearmgr.words import plural

log = logging.getLogger("gearmgr.worker")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    """This process's resident set size in bytes (one read of /proc/self/statm)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def leave(slot: sb.SlotWriter, leaving: int, parent_pid: int | None, jobs: int) -> None:
    """The process leaves: why, in its slot (``leaving``, else a stop; the supervisor gone when
    the parent changed), and in the log when a limit or a job made it leave."""
    reason = leaving or sb.REASON_STOP
    if parent_pid is not None and os.getppid() != parent_pid:
        log.warning("the supervisor is gone; exiting")
        reason = sb.REASON_PARENT_GONE
    slot.leaving(reason)
    if reason not in (sb.REASON_STOP, sb.REASON_PARENT_GONE):
        log.info("leaving after %s (%s)", plural(jobs, "job"), sb.REASON_NAMES[reason])


class Limits:
    """The three recycling limits (0 disables each); ``deadline`` is the monotonic time at
    which max_lifetime is reached (0.0: none)."""

    __slots__ = ("deadline", "max_jobs", "max_memory")

    def __init__(self, max_jobs: int, max_lifetime: float, max_memory: int, started: float):
        self.max_jobs = max_jobs
        self.max_memory = max_memory
        self.deadline = started + max_lifetime if max_lifetime > 0 else 0.0

    def check_baseline(self) -> None:
        """At start: a process already over max_memory would be recycled after every job (a
        recycle loop): memory recycling is turned off for it, and it says so."""
        baseline = current_rss() if self.max_memory else 0
        if baseline > self.max_memory:
            log.warning(
                "a fresh process already uses %d bytes, over max_memory (%d); "
                "memory recycling is off for this process to avoid a recycle loop",
                baseline,
                self.max_memory,
            )
            self.max_memory = 0

    def __bool__(self) -> bool:
        return bool(self.max_jobs or self.deadline or self.max_memory)

    def check(self, jobs: int, now: float) -> tuple[int, int]:
        """After a job: (the REASON_* to leave for, or REASON_NONE; the RSS read, or 0)."""
        if self.max_jobs and jobs >= self.max_jobs:
            return sb.REASON_MAX_JOBS, 0
        if self.deadline and now >= self.deadline:
            return sb.REASON_MAX_LIFETIME, 0
        if self.max_memory:
            rss = current_rss()
            return (sb.REASON_MAX_MEMORY if rss > self.max_memory else sb.REASON_NONE), rss
        return sb.REASON_NONE, 0
