"""Logging for the supervisor and its workers: stderr (journald-friendly), a file, or syslog.

Every process logs through the root logger to the same place. Lines carry the process id; a
worker's lines carry its functions and a job's lines its handle (see job.py). Under systemd
(``$JOURNAL_STREAM`` set) lines go without timestamps and with a ``<N>`` syslog priority prefix,
which journald turns into the entry's priority.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

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


class JournalFormatter(logging.Formatter):
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
    for old in list(root.handlers):  # e.g. the CLI's stderr handler for early messages
        root.removeHandler(old)
        if old is _handler:
            old.close()
    _log_file = log_file
    handler: logging.Handler
    if log_file == "syslog":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(address=address)
        handler.setFormatter(logging.Formatter(SHORT_FORMAT))
    elif log_file:
        handler = logging.FileHandler(log_file, encoding="utf-8", delay=False)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            handler.setFormatter(JournalFormatter(SHORT_FORMAT))
        else:
            handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
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


def redirect_stdio() -> None:
    """Point fds 1 and 2 at the log file, so that ``print`` and tracebacks of worker code end
    up in the same place as the log. Nothing to do for stderr or syslog logging."""
    if isinstance(_handler, logging.FileHandler) and _handler.stream is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = _handler.stream.fileno()
        os.dup2(fd, 1)
        os.dup2(fd, 2)


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
