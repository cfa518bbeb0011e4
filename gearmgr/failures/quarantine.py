"""The quarantine list, shared by the supervisor with its workers without a system call per job.

An anonymous shared mapping made before the first fork (as the scoreboard is): a header of two
8-byte words, the generation and the number of entries, then fixed-size entries (the function,
the job's key: its unique id, else its handle, and the deaths it caused). The supervisor rewrites
the entries and bumps the generation, odd while it writes (a seqlock). A worker compares one
word with the generation it last read before each job, a plain load; only when it changed does
it read the entries again (into a dict it looks keys up in). With nothing quarantined and
nothing changed, a job costs that one comparison.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Iterable
from typing import Any

CAPACITY = 1024  # entries; the supervisor keeps the newest
KEY_BYTES = 256  # a job's key (gearmand's unique ids and handles are at most 64 bytes)
NAME_BYTES = 248  # a function's name, cut beyond (compared cut the same way)
_ENTRY = struct.Struct(f"<IHH{NAME_BYTES}s{KEY_BYTES}s")
_HEADER = 16
GEN, COUNT = 0, 1  # header words

#: (function, key, deaths): one quarantined job.
Entry = tuple[str, bytes, int]


def job_key(handle: bytes, unique: bytes) -> bytes:
    """What identifies a job across its deliveries: its unique id, else its handle."""
    return (unique or handle)[:KEY_BYTES]


def _name(function: str) -> bytes:
    return function.encode("utf-8", "surrogateescape")[:NAME_BYTES]


class QuarantineBoard:
    """The shared list. ``publish`` runs in the supervisor; workers make a :class:`View`."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, _HEADER + capacity * _ENTRY.size, flags=mmap.MAP_SHARED)
        self.words = memoryview(self._map)[:_HEADER].cast("Q")

    def publish(self, entries: Iterable[Entry]) -> None:
        """Replace the list (its newest ``capacity`` entries) and tell the workers."""
        chosen = list(entries)[-self.capacity :]
        w = self.words
        w[GEN] += 1  # odd: being written
        for i, (function, key, deaths) in enumerate(chosen):
            name = _name(function)
            _ENTRY.pack_into(
                self._map, _HEADER + i * _ENTRY.size, deaths, len(name), len(key), name, key
            )
        w[COUNT] = len(chosen)
        w[GEN] += 1  # even: stable

    def read(self) -> tuple[int, list[Entry]] | None:
        """The generation and the entries; None if a write was under way (read again)."""
        w = self.words
        gen = w[GEN]
        if gen & 1:
            return None
        entries = []
        for i in range(min(w[COUNT], self.capacity)):
            deaths, nlen, klen, name, key = _ENTRY.unpack_from(self._map, _HEADER + i * _ENTRY.size)
            entries.append((name[:nlen].decode("utf-8", "surrogateescape"), key[:klen], deaths))
        return (gen, entries) if w[GEN] == gen else None

    def view(self) -> View:
        return View(self)


class Quarantined(Exception):
    """The job was quarantined: ``str()`` is the text after ``Quarantined: `` in the warning."""

    def __init__(self, deaths: int) -> None:
        self.deaths = deaths
        noun = "process" if deaths == 1 else "processes"
        super().__init__(f"killed {deaths} worker {noun}")


class View:
    """A worker's copy of the list. The job path tests ``keys or gen[0] != seen`` (a plain
    load and comparison) and calls :meth:`screen` only when that is true."""

    __slots__ = ("_board", "gen", "keys", "seen")

    def __init__(self, board: QuarantineBoard | None) -> None:
        self._board = board
        # No board (a Worker on its own): a private word that never changes.
        self.gen = board.words if board is not None else memoryview(bytearray(8)).cast("Q")
        self.seen = 0
        self.keys: dict[bytes, dict[bytes, int]] = {}  # key -> function (bytes, cut) -> deaths

    def refresh(self) -> None:
        board = self._board
        if board is None:
            return
        for _ in range(100):
            got = board.read()
            if got is not None:
                break
        else:  # a writer that never finishes: the supervisor died mid-write; keep the old list
            return
        gen, entries = got
        keys: dict[bytes, dict[bytes, int]] = {}
        for function, key, deaths in entries:
            keys.setdefault(key, {})[_name(function)] = deaths
        self.keys, self.seen = keys, gen

    def deaths(self, function: str, handle: bytes, unique: bytes) -> int:
        """How many processes the job killed if it is quarantined, else 0."""
        if self.gen[0] != self.seen:
            self.refresh()
        if not self.keys:
            return 0
        hit = self.keys.get(job_key(handle, unique))
        return hit.get(_name(function), 0) if hit else 0

    def screen(
        self, function: str, handle: bytes, unique: bytes, handler: Callable[[Any], Any]
    ) -> Callable[[Any], Any]:
        """``handler``, or for a quarantined job one that raises :class:`Quarantined`."""
        deaths = self.deaths(function, handle, unique)
        if not deaths:
            return handler

        def refuse(job: Any) -> Any:
            raise Quarantined(deaths)

        return refuse
