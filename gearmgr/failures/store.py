"""The failed-job record: a local SQLite file (stdlib ``sqlite3``) written by every process that
sees a job fail, read by ``gearmgr failed``.

Many writers: WAL mode (readers never wait for a writer, writers wait for each other), a busy
timeout of 10 s, one short ``BEGIN IMMEDIATE`` transaction per record, no fsync per commit
(``synchronous=NORMAL``: a power cut may lose the last records, a crash of the process never
does). A connection is opened lazily in the process that writes, never carried across a fork.
Bounded: each insert deletes what is past ``failed_jobs_max`` (by id, oldest first) and older
than ``failed_jobs_keep``; a workload is kept whole up to 1 MiB, else cut (``size`` keeps the
real length, and a cut record cannot be retried); an error text is cut to 64 KiB, a handle or
unique id to 1 KiB.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKLOAD_LIMIT = 1 << 20  # bytes of a workload kept whole
ERROR_LIMIT = 65536  # characters of an error text or traceback
NAME_LIMIT = 1024  # bytes of a handle or unique id kept (gearmand's are at most 64)
BUSY_TIMEOUT = 10.0  # seconds a writer waits for another

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failed (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    host TEXT NOT NULL,
    function TEXT NOT NULL,
    handle TEXT NOT NULL,
    unique_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    error TEXT NOT NULL,
    deaths INTEGER NOT NULL,
    size INTEGER NOT NULL,
    workload BLOB NOT NULL,
    retried INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS failed_time ON failed (time);
CREATE INDEX IF NOT EXISTS failed_function ON failed (function, id);
"""
_COLUMNS = "id, time, host, function, handle, unique_id, reason, error, deaths, size, retried"


class StoreError(Exception):
    """The record cannot be opened or written; ``str()`` is one line naming the file."""


@dataclass(frozen=True)
class RecordSettings:
    """Where and how long records are kept (the config's ``failed_jobs*`` keys)."""

    path: str
    keep: float = 7 * 86400.0  # seconds
    max: int = 100_000


@dataclass(frozen=True)
class Failure:
    """What a process saw fail: the record's content before it has an id and a time."""

    function: str
    handle: bytes
    unique: bytes
    workload: bytes
    reason: str  # "exception", "timeout" or "quarantined" (scoreboard.RECORD_REASONS)
    error: str
    deaths: int = 0


@dataclass(frozen=True)
class Record:
    """One stored record; ``workload`` is filled by :meth:`FailedJobs.get` only."""

    id: int
    time: float
    host: str
    function: str
    handle: str
    unique: str
    reason: str
    error: str
    deaths: int
    size: int
    retried: int
    workload: bytes | None = None

    @property
    def cut(self) -> bool:
        """The workload was longer than WORKLOAD_LIMIT: only its start is kept."""
        return self.size > WORKLOAD_LIMIT

    def as_json(self) -> dict[str, Any]:
        """The object ``gearmgr failed --json`` prints (SPEC.md's keys)."""
        return {
            "id": self.id,
            "time": self.time,
            "host": self.host,
            "function": self.function,
            "handle": self.handle,
            "unique": self.unique,
            "reason": self.reason,
            "error": self.error,
            "deaths": self.deaths,
            "size": self.size,
            "retried": self.retried,
        }


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _name(value: bytes) -> str:
    """A handle or unique id as stored: cut at NAME_LIMIT bytes (a hostile server's)."""
    if len(value) <= NAME_LIMIT:
        return _text(value)
    return _text(value[:NAME_LIMIT]) + " [cut]"


def _storable(text: str) -> str:
    """``text`` as SQLite takes it: lone surrogates (a file name os.fsdecode made of bytes
    that are not UTF-8, say) escaped as ``\\udcff``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clip_error(text: str) -> str:
    """An error text within ERROR_LIMIT: a traceback's end says most, so the start goes."""
    if len(text) <= ERROR_LIMIT:
        return text
    cut = len(text) - ERROR_LIMIT
    return f"[{cut} characters cut]\n" + text[cut:]


class FailedJobs:
    """The record in the SQLite file ``settings.path``. ``create``: make the file if it is
    missing (the supervisor and its workers); else a missing file is a StoreError (the
    commands, which must not leave an empty file where a typo pointed them)."""

    def __init__(self, settings: RecordSettings, *, create: bool = True) -> None:
        self.settings = settings
        self.create = create
        self.host = socket.gethostname()
        self._db: sqlite3.Connection | None = None

    # -- connection ------------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        path = self.settings.path
        if not self.create and not Path(path).exists():
            raise StoreError(f"failed_jobs {path}: no such file (no job has failed there yet)")
        try:
            db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"failed_jobs {path}: {exc}") from exc
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; sqlite errors as StoreError."""
        try:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"failed_jobs {self.settings.path}: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------------

    def add(self, failure: Failure, now: float | None = None) -> int:
        """Record ``failure``; returns its id. Deletes what retention says must go."""
        now = time.time() if now is None else now
        data = failure.workload
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO failed (time, host, function, handle, unique_id, reason, error,"
                " deaths, size, workload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    self.host,
                    _storable(failure.function),
                    _name(failure.handle),
                    _name(failure.unique),
                    failure.reason,
                    _storable(clip_error(failure.error)),
                    failure.deaths,
                    len(data),
                    data[:WORKLOAD_LIMIT],
                ),
            )
            new = int(cursor.lastrowid or 0)
            self._prune(db, now, new)
        return new

    def _prune(self, db: sqlite3.Connection, now: float, last: int) -> None:
        # ids only grow (AUTOINCREMENT), so the newest ``max`` records have ids above
        # last - max: a range delete on the primary key, cheap when there is nothing to do.
        db.execute("DELETE FROM failed WHERE id <= ?", (last - self.settings.max,))
        db.execute("DELETE FROM failed WHERE time < ?", (now - self.settings.keep,))

    def prune(self, now: float | None = None) -> None:
        """Apply retention now (the commands do, before they read)."""
        now = time.time() if now is None else now
        with self._write() as db:
            row = db.execute("SELECT max(id) FROM failed").fetchone()
            self._prune(db, now, int(row[0] or 0))

    def mark_retried(self, record_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE failed SET retried = retried + 1 WHERE id = ?", (record_id,))

    def purge(self, older_than: float | None = None, function: str | None = None) -> int:
        """Delete records (older than ``older_than`` seconds, of ``function``); how many."""
        where, args = _filters(function, None if older_than is None else time.time() - older_than)
        where = where.replace("time >=", "time <")
        with self._write() as db:
            return int(db.execute(f"DELETE FROM failed{where}", args).rowcount)

    # -- reading ---------------------------------------------------------------------------------

    def records(
        self,
        function: str | None = None,
        since: float | None = None,
        limit: int | None = None,
        errors: bool = True,
    ) -> list[Record]:
        """Records newest first, as a list (see :meth:`iter_records`)."""
        return list(self.iter_records(function, since, limit, errors))

    def iter_records(
        self,
        function: str | None = None,
        since: float | None = None,
        limit: int | None = None,
        errors: bool = True,
    ) -> Iterator[Record]:
        """Records newest first, each read from the file as it is taken (memory: one row);
        ``since``: a wall-clock time. ``errors`` False: each record's ``error`` is left empty
        (not read: up to 64 KiB each, for a table that does not show them)."""
        where, args = _filters(function, since)
        columns = _COLUMNS if errors else _COLUMNS.replace(" error,", " '' AS error,")
        sql = f"SELECT {columns} FROM failed{where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:  # the query runs now: a missing or unreadable file is said before any output
            cursor = self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"failed_jobs {self.settings.path}: {exc}") from exc
        return self._rows(cursor)

    def _rows(self, cursor: sqlite3.Cursor) -> Iterator[Record]:
        try:
            for row in cursor:
                yield Record(*row)
        except sqlite3.Error as exc:
            raise StoreError(f"failed_jobs {self.settings.path}: {exc}") from exc
        finally:
            cursor.close()

    def ids(self, function: str | None = None) -> list[int]:
        where, args = _filters(function, None)
        return [row[0] for row in self._read(f"SELECT id FROM failed{where} ORDER BY id", args)]

    def get(self, record_id: int) -> Record | None:
        rows = self._read(f"SELECT {_COLUMNS}, workload FROM failed WHERE id = ?", (record_id,))
        return Record(*rows[0]) if rows else None

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM failed", ())[0][0])

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"failed_jobs {self.settings.path}: {exc}") from exc


def _filters(function: str | None, since: float | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if function is not None:
        clauses.append("function = ?")
        args.append(function)
    if since is not None:
        clauses.append("time >= ?")
        args.append(since)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
