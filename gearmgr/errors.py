"""The one base of gearmgr's exceptions, and the one place for its exit codes.

Each exception is defined beside the code that raises it, on this base, so that an
application can catch everything gearmgr raises with ``except GearmgrError``::

    GearmgrError
    +-- ConfigError            config.py      a config that cannot be used (one line; exit 2)
    +-- FatalError             errors.py      stops the supervisor (exit ``code``: 1, or 2)
    |   +-- PidFileError       pidfile.py     the pid file is held or cannot be written
    |   +-- PrivilegeError     privileges.py  no such user or group; the switch failed
    |   +-- EmbeddedServerError embedded.py   gearmand is missing or does not come up
    +-- ControlError           control.py     the supervisor cannot be reached or refused
    |   +-- BadRequest         control.py     a control request that is not valid (also ValueError)
    +-- ProtocolError          protocol.py    bytes that are not the Gearman protocol
    +-- WorkerLoadError        discovery.py   a worker file that does not load
    +-- IniError               import_ini.py  a GearmanManager ini that cannot be read (ValueError)
    +-- GearmanError           client.py      what a client meets
        +-- ServerUnavailable                 no job server could be reached
        +-- JobFailed                         the worker failed the job
        +-- JobTimeout                        the answer did not come in time

``YAMLProblem`` (yamlread.py) is internal: config.py turns it into a ConfigError.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``gearmgr`` commands and of worker processes."""

    OK = 0
    #: a fatal error at run time; for ``check`` and ``reload``: a worker file does not load
    FATAL = 1
    #: a usage or configuration error
    USAGE = 2
    #: a worker process none of whose worker files could be loaded
    NO_FUNCTIONS = 3
    #: a worker process whose job overran its timeout (the job was failed)
    TIMEOUT = 4


class GearmgrError(Exception):
    """Base class of every exception gearmgr raises."""


class FatalError(GearmgrError):
    """An error that stops the supervisor: exit code 1, or 2 for a configuration problem."""

    def __init__(self, message: str, code: int = ExitCode.FATAL) -> None:
        super().__init__(message)
        self.code = int(code)
