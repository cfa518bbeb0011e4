"""Code-change detection for ``auto_reload``: inotify on Linux, polling elsewhere.

Only the worker folders are watched (not the working directory, where logs change), and only
``*.py`` names that are not editor temp files. Events are debounced: a change is reported once
the folders have been quiet for DEBOUNCE seconds, so an editor's save burst (write temp file,
rename, chmod) triggers one reload. inotify was chosen over polling because it costs nothing
while idle and reacts at once; polling (a stat of every file every POLL_INTERVAL) is the
fallback when inotify is unavailable (not Linux, or out of watches).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("gearmgr.watch")

DEBOUNCE = 0.2
POLL_INTERVAL = 1.0
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_MODIFY
EVENT = struct.Struct("iIII")


def interesting(name: str) -> bool:
    """Worker files only: ``*.py`` and not an editor's temp or backup file."""
    return name.endswith(".py") and not name.startswith((".", "#", "~"))


def snapshot(dirs: Iterable[Path]) -> dict[Path, tuple[int, int]]:
    """(mtime_ns, size) of every worker file in ``dirs``."""
    out = {}
    for folder in dirs:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if interesting(entry.name):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                out[Path(entry.path)] = (st.st_mtime_ns, st.st_size)
    return out


class Watcher:
    """Tells the supervisor loop when worker files changed.

    ``fileno()`` is an fd to put in the selector (inotify), or None when polling; call
    :meth:`read` when it is readable and :meth:`due` with ``now`` on every loop turn: it
    returns True once a burst of changes has settled (or, when polling, a scan found one).
    """

    def __init__(self, dirs: Iterable[Path]) -> None:
        self.dirs = [Path(d) for d in dirs]
        self._fd: int | None = None
        self._dirty_since = 0.0
        self._last_event = 0.0
        self._next_poll = 0.0
        self._snapshot = snapshot(self.dirs)
        self._start_inotify()

    @property
    def mode(self) -> str:
        return "inotify" if self._fd is not None else "polling"

    def fileno(self) -> int | None:
        return self._fd

    def _start_inotify(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1 failed")
            for folder in self.dirs:
                if not folder.is_dir():
                    continue
                wd = libc.inotify_add_watch(fd, os.fsencode(folder), MASK)
                if wd < 0:
                    os.close(fd)
                    raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder} failed")
        except (OSError, AttributeError) as exc:
            log.info("auto_reload: inotify unavailable (%s); polling every %gs", exc, POLL_INTERVAL)
            return
        self._fd = fd

    def read(self, now: float) -> None:
        """Consume pending inotify events; remember when the last relevant one came."""
        assert self._fd is not None
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        pos = 0
        relevant = False
        while pos + EVENT.size <= len(data):
            _, _, _, length = EVENT.unpack_from(data, pos)
            name = (
                data[pos + EVENT.size : pos + EVENT.size + length]
                .rstrip(b"\0")
                .decode(errors="replace")
            )
            pos += EVENT.size + length
            if interesting(name):
                relevant = True
        if relevant:
            if not self._dirty_since:
                self._dirty_since = now
            self._last_event = now

    def due(self, now: float) -> bool:
        """Whether a settled change is waiting to be handled (resets it)."""
        if self._fd is None:
            if now < self._next_poll:
                return False
            self._next_poll = now + POLL_INTERVAL
            current = snapshot(self.dirs)
            changed = current != self._snapshot
            self._snapshot = current
            return changed
        if self._dirty_since and now - self._last_event >= DEBOUNCE:
            self._dirty_since = 0.0
            return True
        return False

    def next_wake(self, now: float) -> float | None:
        """When the loop should wake to call :meth:`due` (None: only on events)."""
        if self._fd is None:
            return max(now, self._next_poll)
        if self._dirty_since:
            return self._last_event + DEBOUNCE
        return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
