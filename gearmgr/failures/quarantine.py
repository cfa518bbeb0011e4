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

A job is looked for only once the supervisor has published it (reaped one of the processes it
killed): the job path's test is one comparison of the generation while nothing is published.
So if several processes die with one job before the supervisor has reaped the first of them
(it reaps within milliseconds; a handful of idle processes can take a job that exits at once
in less), the job runs that many more times; with two processes, or a job that runs for a
while, it runs exactly ``poison_after`` times. (A table of the hashes of the jobs in hand
closed that gap, at the price of a hash and a new integer object per job: not worth it.)
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
        self._map = mmap.mmap(-1, _HEADER + capacity * _ENTRY.size, flags=mmap.MAP_SHARED)
        self.words = memoryview(self._map)[:_HEADER].cast("Q")

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
    """A worker's copy of the list. The job path tests ``keys or gen[0] != seen`` (a plain
    load and comparison while nothing is published) and calls :meth:`screen` only when that
    is true."""

    __slots__ = ("_board", "_unreaped", "gen", "keys", "seen")

    def __init__(self, board: QuarantineBoard | None, unreaped: Unreaped | None = None) -> None:
        self._board = board
        self._unreaped = unreaped
        # No board (a Worker on its own): a private word that never changes.
        self.gen = board.words if board is not None else memoryview(bytearray(8)).cast("Q")
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

    def deaths(self, function: str, handle: bytes, unique: bytes) -> int:
        """The processes this job killed if that reached its function's poison_after (it is
        to be refused), else 0."""
        for _ in range(RETRIES):
            gen = self.gen[0]
            if gen != self.seen and not self._refresh():
                continue  # being written
            hit = self.keys.get(job_key(handle, unique))
            known = hit.get(_name(function)) if hit else None
            if known is None:
                return 0
            deaths, limit = known
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
    ) -> Callable[[Any], Any]:
        """``handler``, or for a quarantined job one that raises :class:`Quarantined`."""
        if self.gen[0] == self.seen and (unique or handle)[:KEY_BYTES] not in self.keys:
            return handler  # the usual case once something is published: not this job
        deaths = self.deaths(function, handle, unique)
        if not deaths:
            return handler

        def refuse(job: Any) -> Any:
            raise Quarantined(deaths)

        return refuse
