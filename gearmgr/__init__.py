"""gearmgr: run pools of Gearman workers in production.

The public API:

- :class:`Client` submits jobs (``submit``, ``status``) with failover between servers;
  :class:`AsyncClient` does the same from asyncio, many submits in flight at once;
- :func:`load_config` reads and validates a YAML config into a :class:`Config`;
- :class:`Supervisor` runs the processes a config plans (what ``gearmgr run`` does);
- :class:`Worker` is the worker loop on its own, for running one process without a supervisor;
  :class:`AsyncWorker` the same for ``async def`` functions, many jobs at once;
- :class:`Job` is what a worker function receives.

Exceptions::

    GearmgrError               the base of everything gearmgr raises (gearmgr/errors.py)
    ├── GearmanError           a job server said no, or a connection broke mid-call
    │   ├── ServerUnavailable  no server could be reached (names each one tried)
    │   ├── JobFailed          the worker failed the job (WORK_FAIL / WORK_EXCEPTION)
    │   └── JobTimeout         no result within the call's timeout
    ├── ConfigError            the config does not load (file, line, key path, what was expected)
    └── ProtocolError          bytes that are not the Gearman protocol
"""

from importlib import metadata as _metadata

from gearmgr.config import Config, ConfigError, FunctionSettings, load_config
from gearmgr.errors import GearmgrError
from gearmgr.wire.admin import Admin
from gearmgr.wire.client import (
    Client,
    GearmanError,
    JobFailed,
    JobStatus,
    JobTimeout,
    ServerUnavailable,
)
from gearmgr.wire.protocol import ProtocolError
from gearmgr.worker.job import Job

try:
    __version__ = _metadata.version("gearmgr")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # The supervisor and the worker loop pull in psutil, prometheus_client and friends; an
    # application that only submits jobs does not pay for them.
    if name == "Supervisor":
        from gearmgr.supervisor.arbiter import Supervisor

        return Supervisor
    if name == "AsyncClient":
        from gearmgr.wire.aclient import AsyncClient

        return AsyncClient
    if name == "AsyncWorker":
        from gearmgr.worker.aio import AsyncWorker

        return AsyncWorker
    if name == "Worker":
        from gearmgr.worker.loop import Worker

        return Worker
    raise AttributeError(f"module 'gearmgr' has no attribute {name!r}")


__all__ = [
    "Admin",
    "AsyncClient",
    "AsyncWorker",
    "Client",
    "Config",
    "ConfigError",
    "FunctionSettings",
    "GearmanError",
    "GearmgrError",
    "Job",
    "JobFailed",
    "JobStatus",
    "JobTimeout",
    "ProtocolError",
    "ServerUnavailable",
    "Supervisor",
    "Worker",
    "load_config",
]
