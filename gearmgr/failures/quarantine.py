"""The poison-job list, shared by the supervisor with its workers without a system call per job.

An anonymous shared mapping made before the first fork (as the scoreboard is): a header of two
8-byte words, the generation and the number of entries, then fixed-size entries: a job that
killed processes (its function, its key: the unique id, else the handle), its deaths and its
function's ``poison_after``. The supervisor rewrites the entries and bumps the generation, odd
while it writes (a seqlock). A worker compares one word with the generation it last read before
each job, a plain load; only when it changed does it read the entries again, into a dict.

A job's deaths, as a worker handed it counts them: the supervisor's (the processes it reaped)
plus the processes that died with the job in hand and are not reaped yet: gearmand hands a job
again as soon as its worker's connection closes, often before the supervisor has reaped the
process, and a slot still showing the same job busy can only be such a process (gearmand never
gives one job to two live workers). The supervisor clears a reaped slot's job inside the
generation's odd window, so a worker never counts one death twice or not at all. At
``poison_after`` the worker refuses the job: it runs exactly ``poison_after`` times.

Which jobs to count for, cheaply: those the supervisor published, and those whose handle is in
the **cells**, a direct-mapped table of job handles' hashes (the whole 64-bit hash) in the same
mapping. A worker stores its job's hash in the job's cell when the job starts, so the next
worker handed the same job (a handle is handed out again only when its worker died) finds it
there, even before the supervisor has reaped anything, and counts. Cells are not cleared when
a job ends (one store less per job): a stale hash matches only the same handle, which gearmand
reuses only after a restart without a persistent queue, and a false match costs one check.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterable
from typing import Any

CAPACITY = 4096  # entries (2 MiB of address space; pages are touched only when written)
KEY_BYTES = 256  # a job's key (gearmand's unique ids and handles are at most 64 bytes)
NAME_BYTES = 248  # a function's name, cut beyond (compared cut the same way)
_ENTRY = struct.Struct(f"<IIHH{NAME_BYTES}s{KEY_BYTES}s")
_HEADER = 16
CELLS = 8192  # words of the handle-hash table (a power of two)
GEN, COUNT = 0, 1  # header words
RETRIES = 1000  # reads of a list being written before a worker keeps its old copy

#: (function, key, deaths, poison_after): one job that killed processes.
Entry = tuple[str, bytes, int, int]
#: How many other slots show this job (handle, unique) busy: deaths not reaped yet.
Unreaped = Callable[[bytes, bytes], int]


def job_key(handle: bytes, unique: bytes) -> bytes:
    """What identifies a job across its deliveries: its unique id, else its handle."""
    return (unique or handle)[:KEY_BYTES]


def _name(function: str) -> bytes:
    return function.encode("utf-8", "surrogateescape")[:NAME_BYTES]


class QuarantineBoard:
    """The shared list. The supervisor writes it between :meth:`begin` and :meth:`end`;
    workers make a :class:`View`."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._cells = _HEADER + capacity * _ENTRY.size
        self._map = mmap.mmap(-1, self._cells + CELLS * 8, flags=mmap.MAP_SHARED)
        self.words = memoryview(self._map)[:_HEADER].cast("Q")
        self.cells = memoryview(self._map)[self._cells :].cast("q")

    def begin(self) -> None:
        """Open a write (the generation turns odd): workers wait for :meth:`end`."""
        self.words[GEN] += 1

    def end(self) -> None:
        self.words[GEN] += 1

    def write(self, entries: Iterable[Entry]) -> None:
        """Replace the list by its newest ``capacity`` entries (between begin and end)."""
        chosen = list(entries)[-self.capacity :]
        for i, (function, key, deaths, limit) in enumerate(chosen):
            name = _name(function)
            offset = _HEADER + i * _ENTRY.size
            _ENTRY.pack_into(self._map, offset, deaths, limit, len(name), len(key), name, key)
        self.words[COUNT] = len(chosen)

    def read(self) -> tuple[int, list[Entry]] | None:
        """The generation and the entries; None if a write was under way (read again)."""
        w = self.words
        gen = w[GEN]
        if gen & 1:
            return None
        entries = []
        for i in range(min(w[COUNT], self.capacity)):
            offset = _HEADER + i * _ENTRY.size
            deaths, limit, nlen, klen, name, key = _ENTRY.unpack_from(self._map, offset)
            function = name[:nlen].decode("utf-8", "surrogateescape")
            entries.append((function, key[:klen], deaths, limit))
        return (gen, entries) if w[GEN] == gen else None


class Quarantined(Exception):
    """The job was quarantined: ``str()`` is the text after ``Quarantined: `` in the warning."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        noun = "process" if deaths == 1 else "processes"
        super().__init__(f"killed {deaths} worker {noun}")


class View:
    """A worker's copy of the list. The job path calls :meth:`admit` when a job starts: a hash,
    three loads and a store while no job has killed a process."""

    __slots__ = ("_board", "_limits", "_unreaped", "cells", "gen", "keys", "seen")

    def __init__(
        self,
        board: QuarantineBoard | None,
        unreaped: Unreaped | None = None,
        limits: dict[str, int] | None = None,
    ) -> None:
        self._board = board
        self._unreaped = unreaped
        self._limits = limits or {}  # function -> poison_after, for jobs not published yet
        # No board (a Worker on its own): private words that never change.
        self.gen = board.words if board is not None else memoryview(bytearray(8)).cast("Q")
        self.cells = (
            board.cells if board is not None else memoryview(bytearray(8 * CELLS)).cast("q")
        )
        self.seen = 0
        # key -> function (bytes, cut) -> (deaths, poison_after)
        self.keys: dict[bytes, dict[bytes, tuple[int, int]]] = {}

    def _refresh(self) -> bool:
        board = self._board
        got = board.read() if board is not None else None
        if got is None:
            return False
        gen, entries = got
        keys: dict[bytes, dict[bytes, tuple[int, int]]] = {}
        for function, key, deaths, limit in entries:
            keys.setdefault(key, {})[_name(function)] = (deaths, limit)
        self.keys, self.seen = keys, gen
        return True

    def admit(
        self, function: str, handle: bytes, unique: bytes, handler: Callable[[Any], Any]
    ) -> Callable[[Any], Any]:
        """A job starts: ``handler``, or one that refuses a quarantined job."""
        h = hash(handle)
        cells, cell = self.cells, h & (CELLS - 1)
        left = cells[cell] == h  # a process died with this job (or one sharing the cell)
        if left or self.keys or self.gen[0] != self.seen:
            handler = self.screen(function, handle, unique, handler, left)
        cells[cell] = h
        return handler

    def deaths(self, function: str, handle: bytes, unique: bytes, left: bool = False) -> int:
        """The processes this job killed if that reached its function's poison_after (it is
        to be refused), else 0. ``left``: its cell was set (a process may have died with it)."""
        for _ in range(RETRIES):
            gen = self.gen[0]
            if gen != self.seen and not self._refresh():
                continue  # being written
            hit = self.keys.get(job_key(handle, unique))
            known = hit.get(_name(function)) if hit else None
            if known is None and not left:
                return 0
            deaths, limit = known or (0, self._limits.get(function, 0))
            if not limit:
                return 0
            if deaths < limit and self._unreaped is not None:
                deaths += self._unreaped(handle, unique)
            if self.gen[0] == gen:
                return deaths if deaths >= limit else 0
        return 0  # a writer that never finishes (the supervisor died mid-write): run it

    def screen(
        self,
        function: str,
        handle: bytes,
        unique: bytes,
        handler: Callable[[Any], Any],
        left: bool = False,
    ) -> Callable[[Any], Any]:
        """``handler``, or for a quarantined job one that raises :class:`Quarantined`."""
        deaths = self.deaths(function, handle, unique, left)
        if not deaths:
            return handler

        def refuse(job: Any) -> Any:
            raise Quarantined(deaths)

        return refuse
