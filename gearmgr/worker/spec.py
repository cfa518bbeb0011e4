"""What one worker process is to run, handed whole from the supervisor's plan to the worker.

Built once in the supervisor, before the fork, from the plan's ProcessSpec, the worker files
found and the config's servers (the lifetime's jitter already drawn), so that the child reads
every setting from one frozen value and nothing is re-packed on the way.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from gearmgr.failures.store import RecordSettings


@dataclass(frozen=True)
class WorkerSpec:
    key: str  # the process's place in the plan: ``reverse#0``
    files: tuple[tuple[str, Path], ...]  # function -> worker file, sorted by function name
    servers: tuple[str, ...]
    timeouts: tuple[tuple[str, float], ...]  # per-function job timeout, seconds (0 = none)
    max_jobs: int
    max_lifetime: float  # seconds, lifetime_jitter applied (0 = none)
    max_memory: int  # bytes (0 = none)
    slot: int  # its scoreboard slot
    records: RecordSettings | None = None  # where failed jobs are recorded (None: nowhere)
    #: jobs at once: above 1 only for a dedicated process of an async function (its places)
    concurrency: int = 1

    @property
    def functions(self) -> tuple[str, ...]:
        """The function names, in the order of the process's scoreboard counters."""
        return tuple(name for name, _ in self.files)

    def client_id(self, pid: int | None = None) -> str:
        """What the worker tells the job server it is: ``host:pid:key``."""
        return f"{socket.gethostname()}:{pid or os.getpid()}:{self.key}"
