"""Logging for the supervisor and its workers: stderr (journald-friendly), a file, or syslog.

Every process logs through the root logger to the same place. Lines carry the process id; a
worker's lines carry its functions and a job's lines its handle (see job.py). Under systemd
(``$JOURNAL_STREAM`` set) lines go without timestamps and with a ``<N>`` syslog priority prefix,
which journald turns into the entry's priority.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import math
import os
import sys
from typing import Any

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
PLAIN_FORMAT = "%(asctime)s %(levelname)s gearmgr[%(process)d] %(gm_label)s: %(message)s"
SHORT_FORMAT = "gearmgr[%(process)d] %(gm_label)s: %(message)s"
#: Longest message a log line carries; the rest is cut and its length given. Worker code cannot
#: write a megabyte line through the log either.
MAX_MESSAGE = 4096
#: Longest traceback kept with a record: its head and its tail (where the exception is) survive.
MAX_TRACEBACK = 16384
#: Longest excerpt of bytes from a peer (an ERROR text, a function name, a job handle) in a line.
MAX_PEER_TEXT = 200


def clip(value: bytes | str, limit: int = MAX_PEER_TEXT) -> str:
    """``value`` (bytes from a peer, or text) made safe for one log line: bytes that are not
    UTF-8 shown as ``\\xNN``, control characters (newlines included) escaped, and at most
    ``limit`` characters, followed by ``... (N bytes)`` when cut."""
    size = len(value)
    unit = "bytes" if isinstance(value, bytes) else "chars"
    if isinstance(value, bytes):
        value = value[: limit * 4].decode("utf-8", "backslashreplace")
    if not value.isprintable():
        value = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value[: limit + 1])
    if len(value) > limit or (unit == "bytes" and size > limit * 4):
        return f"{value[:limit]}... ({size} {unit})"
    return value


class Throttle:
    """Rate limit for one kind of repeated line (one server's failures, say): the first one
    goes out, then at most one per ``interval`` seconds, which tells how many were held back."""

    __slots__ = ("held", "interval", "last")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -math.inf
        self.held = 0

    def allow(self, now: float) -> str | None:
        """``None``: hold this line back (it is counted). Else the line may go out, with this
        suffix appended (empty, or `` (N more since ...)``)."""
        if now - self.last < self.interval:
            self.held += 1
            return None
        suffix = ""
        if self.held:
            suffix = f" ({self.held} more in the last {now - self.last:.0f}s)"
        self.last, self.held = now, 0
        return suffix


class _Label(logging.Filter):
    """Adds what the process is (``supervisor``, ``worker reverse,echo``) to every record, so
    lines from worker code's own loggers say which function they come from."""

    label = "supervisor"

    def filter(self, record: logging.LogRecord) -> bool:
        record.gm_label = self.label
        return True


_label = _Label()


def set_label(label: str) -> None:
    """Name this process in every log line from now on (called after a fork)."""
    _label.label = label


class BoundedFormatter(logging.Formatter):
    """Formats records with their message cut at :data:`MAX_MESSAGE` characters and their
    traceback at :data:`MAX_TRACEBACK` (head and tail kept), so no record writes a huge line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if len(message) > MAX_MESSAGE:
            record.message = f"{message[:MAX_MESSAGE]}... ({len(message)} chars)"
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        if len(text) <= MAX_MESSAGE:
            return text
        text = "\n".join(
            line if len(line) <= MAX_MESSAGE else f"{line[:MAX_MESSAGE]}... ({len(line)} chars)"
            for line in text.split("\n")
        )
        if len(text) <= MAX_TRACEBACK:
            return text
        head, tail = MAX_TRACEBACK // 2, MAX_TRACEBACK // 2
        cut = len(text) - head - tail
        return f"{text[:head]}\n... ({cut} chars of traceback cut) ...\n{text[-tail:]}"


class JournalFormatter(BoundedFormatter):
    """``<priority>message`` lines for journald (SyslogLevelPrefix)."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


_handler: logging.Handler | None = None
_log_file: str | None = None


def setup_logging(level: str = "info", log_file: str | None = None) -> None:
    """Send every gearmgr record at ``level`` and above to stderr, ``log_file`` or syslog."""
    global _handler, _log_file
    root = logging.getLogger()
    # The new handler first: a log file that cannot be opened raises here (OSError), with the
    # old handler still in place, so that a failed reload keeps logging where it did.
    handler: logging.Handler
    if log_file == "syslog":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(address=address)
        handler.setFormatter(BoundedFormatter(SHORT_FORMAT))
    elif log_file:
        # backslashreplace: a file name that is not UTF-8 in a message shows escaped
        handler = logging.FileHandler(
            log_file, encoding="utf-8", delay=False, errors="backslashreplace"
        )
        handler.setFormatter(BoundedFormatter(PLAIN_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            handler.setFormatter(JournalFormatter(SHORT_FORMAT))
        else:
            handler.setFormatter(BoundedFormatter(PLAIN_FORMAT))
    for old in list(root.handlers):  # e.g. the CLI's stderr handler for early messages
        root.removeHandler(old)
        if old is _handler:
            old.close()
    _log_file = log_file
    handler.addFilter(_label)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))


def reopen_log_file(redirect: bool = True) -> None:
    """Reopen the log file after logrotate moved it (SIGUSR1). ``redirect``: point fds 1 and 2
    at it again too (workers; the supervisor keeps its own stderr for fatal errors)."""
    if isinstance(_handler, logging.FileHandler):
        _handler.acquire()
        try:
            try:
                stream = _handler._open()
            except OSError as exc:  # keep writing to the old file rather than die
                print(
                    f"gearmgr[{os.getpid()}]: cannot reopen the log file {_handler.baseFilename}: "
                    f"{exc.strerror}; still writing to the old one",
                    file=sys.__stderr__,
                )
                return
            old, _handler.stream = _handler.stream, stream
            if old is not None:
                old.close()
        finally:
            _handler.release()
        if redirect:
            redirect_stdio()


def ensure_stdio() -> None:
    """Open ``/dev/null`` on any of fds 0, 1 and 2 that is closed (a job may close them).

    Otherwise the next socket or file opened takes that number, and a later ``print`` or
    traceback writes into it (into a job server's connection, say). Three ``fstat`` calls."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                continue
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one
            if null == fd:
                os.set_inheritable(fd, True)
            else:  # another thread opened something on it meanwhile: leave that alone
                os.close(null)


def redirect_stdio() -> None:
    """Point fds 1 and 2 at the log file, so that ``print`` and tracebacks of worker code end
    up in the same place as the log. Nothing to do for stderr or syslog logging. Before that,
    fds 0-2 that are closed get ``/dev/null``."""
    ensure_stdio()
    if isinstance(_handler, logging.FileHandler) and _handler.stream is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = _handler.stream.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)


def flush_logs() -> None:
    """Flush every handler; a log that cannot be written (a full disk) loses lines, never
    the process that writes them."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except (OSError, ValueError):
            pass
