"""The one base of gearmgr's exceptions, and the one place for its exit codes.

Each exception is defined beside the code that raises it, on this base, so that an
application can catch everything gearmgr raises with ``except GearmgrError``::

    GearmgrError                     (module)                  (what)
    +-- ConfigError                  config/settings.py        a config that cannot be used
    +-- FatalError                   errors.py                 stops the supervisor (exit code)
    |   +-- PidFileError             ops/pidfile.py            the pid file is held or unwritable
    |   +-- PrivilegeError           ops/privileges.py         no such user or group
    |   +-- EmbeddedServerError      supervisor/embedded.py    gearmand missing or not coming up
    +-- ControlError                 ops/control.py            the supervisor unreachable, refusing
    |   +-- BadRequest               ops/control.py            an invalid control request
    +-- ProtocolError                wire/protocol.py          bytes that are not the protocol
    +-- WorkerLoadError              worker/loading.py         a worker file that does not load
    +-- IniError                     cli/ini_read.py           an unreadable GearmanManager ini
    +-- GearmanError                 wire/client.py            what a client meets
        +-- ServerUnavailable                                  no job server could be reached
        +-- JobFailed                                          the worker failed the job
        +-- JobTimeout                                         the answer did not come in time

``YAMLProblem`` (yamlread.py) is internal: the config loader turns it into a ConfigError.
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


def exception_text(exc: BaseException, limit: int = 500) -> str:
    """``Type: message`` of any exception, safe to log, print or encode: one line, at most
    ``limit`` characters, no lone surrogates, even when the exception's own ``__str__`` raises
    or returns something huge."""
    return one_line(f"{type(exc).__name__}: {exception_message(exc)}", limit)


def exception_message(exc: BaseException) -> str:
    """``str(exc)``, even when the exception's own ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # its __str__ is broken: say so instead of failing
        return "(its message cannot be shown)"


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (line breaks and control characters escaped), bounded, UTF-8 safe."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
