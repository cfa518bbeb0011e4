"""The scoreboard: one fixed-size slot per worker process in shared memory (as php-fpm does).

The supervisor maps it before forking; each worker writes its own slot with plain 8-byte stores
on the job path (no syscalls, no locks, no pipes to fill up) and the supervisor reads every slot
when it needs to (status, metrics, timeouts). Aligned 8-byte stores are atomic on the platforms
gearmgr runs on, so a reader sees either the old or the new value of a field, never a mix.

Slot layout, in 8-byte words:

    0 pid            4 jobs_failed       8 exit_reason
    1 state          5 rss (bytes)       9 servers_connected
    2 reserved       6 started_at       10 job_exit (how a job asked the process to exit)
    3 jobs_done      7 job_deadline     11 in_hand (jobs running now, async processes)
                                        12 places (jobs it may run at once; 0 = one)
                                        13 - 15 reserved
    16 + 14*i ...: the process's i-th function (up to 32): jobs done, jobs failed, the sum of
    job durations (float, s), then one counter per duration bucket (a job counts in the first
    bucket whose upper bound it does not exceed; longer jobs in none). Prometheus' cumulative
    buckets are summed up by the reader.
    HAND ...: the job in hand, stored before each job runs: the function's number (its place
    in the process's function list, plus one) and the handle and unique id (128 bytes each,
    NUL-padded). The supervisor reads it when a busy process dies: the job that killed it.
    RECORDED ...: failed-job records this process wrote, by reason; then records it could not
    write.
"""

from __future__ import annotations

import mmap
import struct
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from gearmgr.compiled import speedups as _speedups

#: Upper bounds (seconds) of the job duration histogram buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FUNC_STRIDE = 3 + len(BUCKETS)
_FIRST_BOUND, _NBUCKETS = BUCKETS[0], len(BUCKETS)
MAX_FUNCTION_COUNTERS = 32
HAND = 16 + FUNC_STRIDE * MAX_FUNCTION_COUNTERS
HAND_BYTES = 128  # of a handle, and of a unique id (gearmand's are at most 64)
_HAND = struct.Struct(f"<Q{HAND_BYTES}s{HAND_BYTES}s")
RECORDED = HAND + _HAND.size // 8
RECORD_REASONS = ("exception", "timeout", "quarantined")
RECORD_LOST = len(RECORD_REASONS)  # RECORDED + this: records that could not be written
WORDS_PER_SLOT = RECORDED + len(RECORD_REASONS) + 1
SLOT_BYTES = WORDS_PER_SLOT * 8
F_DONE, F_FAILED, F_DURATION, F_BUCKETS = 0, 1, 2, 3
#: A function's counter words as the job path uses them (SlotWriter.counter_words).
Counters = tuple[int, int, int] | None
if _speedups is not None:
    _speedups.set_buckets(BUCKETS)

PID, STATE, JOBS_DONE, JOBS_FAILED, RSS, STARTED_AT, JOB_DEADLINE = 0, 1, 3, 4, 5, 6, 7
EXIT_REASON, SERVERS_CONNECTED, JOB_EXIT = 8, 9, 10
IN_HAND, PLACES = 11, 12  # written by the asyncio loop only (a sync process leaves them 0)
FUNC_BASE = 16

# States (word STATE)
EMPTY, STARTING, IDLE, BUSY, STOPPING = range(5)
STATE_NAMES = {
    EMPTY: "empty",
    STARTING: "starting",
    IDLE: "idle",
    BUSY: "busy",
    STOPPING: "stopping",
}

# Why a worker left on its own (word EXIT_REASON), read by the supervisor after reaping it.
REASON_NONE, REASON_MAX_JOBS, REASON_MAX_LIFETIME, REASON_MAX_MEMORY = range(4)
REASON_STOP, REASON_PARENT_GONE, REASON_TIMEOUT, REASON_NO_FUNCTIONS = range(4, 8)
REASON_JOB_EXIT = 8  # a job raised SystemExit (sys.exit) or KeyboardInterrupt
REASON_NAMES = {
    REASON_NONE: "crash",
    REASON_MAX_JOBS: "max_jobs",
    REASON_MAX_LIFETIME: "max_lifetime",
    REASON_MAX_MEMORY: "max_memory",
    REASON_STOP: "stop",
    REASON_PARENT_GONE: "parent_gone",
    REASON_TIMEOUT: "timeout",
    REASON_NO_FUNCTIONS: "import",
    REASON_JOB_EXIT: "job_exit",
}

_INTERRUPT, _EXIT_NONE, _EXIT_CODE = 1, 2, 3


def job_exit_word(exc: BaseException) -> int:
    """How a job asked its process to exit, as the word JOB_EXIT stores it."""
    if not isinstance(exc, SystemExit):
        return _INTERRUPT
    code = exc.code
    if code is None:
        return _EXIT_NONE
    if isinstance(code, int) and 0 <= code < 1 << 32:
        return _EXIT_CODE + code
    return 0  # a message, or a code that is not a small int


def describe_job_exit(word: int) -> str:
    """The JOB_EXIT word in words: 'a job called sys.exit(3)'."""
    if word == _INTERRUPT:
        return "a job raised KeyboardInterrupt"
    if word == _EXIT_NONE:
        return "a job called sys.exit()"
    if word >= _EXIT_CODE:
        return f"a job called sys.exit({word - _EXIT_CODE})"
    return "a job called sys.exit() with a message"


@dataclass(frozen=True)
class SlotView:
    """A snapshot of one slot, as the supervisor reads it."""

    pid: int
    state: str
    jobs_done: int
    jobs_failed: int
    job_deadline: float
    rss: int
    started_at: float
    exit_reason: str
    servers_connected: int
    function_stats: tuple[FunctionStats, ...]
    in_hand: int = 0  # jobs running now (async processes; a sync one: 1 when busy)
    places: int = 1  # jobs it may run at once


@dataclass(frozen=True)
class FunctionStats:
    """One function's counters in one slot (or summed over several)."""

    done: int = 0
    failed: int = 0
    duration_sum: float = 0.0
    buckets: tuple[int, ...] = (0,) * len(BUCKETS)

    def __add__(self, other: FunctionStats) -> FunctionStats:
        return FunctionStats(
            self.done + other.done,
            self.failed + other.failed,
            self.duration_sum + other.duration_sum,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )


class Scoreboard:
    """``capacity`` slots in an anonymous shared mapping, inherited by forked workers."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, capacity * SLOT_BYTES, flags=mmap.MAP_SHARED)
        self.words = memoryview(self._map).cast("Q")
        self.floats = memoryview(self._map).cast("d")

    def clear(self, index: int) -> None:
        base = index * WORDS_PER_SLOT
        self.words[base : base + WORDS_PER_SLOT] = memoryview(bytes(SLOT_BYTES)).cast("Q")

    def base(self, index: int) -> int:
        """The first word of slot ``index``: a worker adds the field offsets to it."""
        return index * WORDS_PER_SLOT

    def set_exit_reason(self, index: int, reason: int) -> None:
        """Say why the process of slot ``index`` leaves (one of the REASON_* codes)."""
        self.words[index * WORDS_PER_SLOT + EXIT_REASON] = reason

    def starting(self, index: int) -> None:
        """A fresh slot for a process about to be forked: cleared, its state STARTING."""
        self.clear(index)
        self.words[index * WORDS_PER_SLOT + STATE] = STARTING

    def job_exit(self, index: int) -> int:
        """The word in which a worker said how a job asked it to exit (describe_job_exit)."""
        return int(self.words[index * WORDS_PER_SLOT + JOB_EXIT])

    def in_hand(self, index: int) -> tuple[int, bytes, bytes] | None:
        """The job the process of slot ``index`` last started: the function's place in its
        list, its handle, its unique id. None if it has started none."""
        number, handle, unique = _HAND.unpack_from(self._map, (index * WORDS_PER_SLOT + HAND) * 8)
        if not number:
            return None
        return number - 1, handle.rstrip(b"\0"), unique.rstrip(b"\0")

    def drop_in_hand(self, index: int) -> None:
        """Forget the job in hand of slot ``index`` (its process was reaped)."""
        self.words[index * WORDS_PER_SLOT + HAND] = 0

    def busy_with(self, handle: bytes, unique: bytes, exclude: int) -> int:
        """How many slots but ``exclude`` show this job busy (its handle and unique id, cut as
        stored): gearmand gives a job to one live worker at a time, so these are processes
        that died with it in hand and are not reaped yet. Reads every slot: for suspects only."""
        handle, unique = handle[:HAND_BYTES], unique[:HAND_BYTES]
        w, found = self.words, 0
        for index in range(self.capacity):
            b = index * WORDS_PER_SLOT
            if index == exclude or w[b + STATE] != BUSY or not w[b + HAND]:
                continue
            _, h, u = _HAND.unpack_from(self._map, (b + HAND) * 8)
            if h.rstrip(b"\0") == handle and u.rstrip(b"\0") == unique:
                found += 1
        return found

    def recorded(self, index: int) -> tuple[int, ...]:
        """Records written by the process of slot ``index``, by RECORD_REASONS, then lost."""
        b = index * WORDS_PER_SLOT + RECORDED
        return tuple(self.words[b : b + RECORD_LOST + 1])

    def writer(self, index: int, functions: Sequence[str]) -> SlotWriter:
        """The writer a worker process uses for slot ``index``; ``functions`` in counter order."""
        return SlotWriter(self, index, functions)

    def glance(self, index: int) -> tuple[str, int, float]:
        """What the supervisor's loop needs of a live slot, cheaply: state, servers connected,
        the deadline of the job in hand (0.0: none)."""
        b = index * WORDS_PER_SLOT
        return (
            STATE_NAMES.get(self.words[b + STATE], "unknown"),
            self.words[b + SERVERS_CONNECTED],
            self.floats[b + JOB_DEADLINE],
        )

    def read(self, index: int, functions: int = 0) -> SlotView:
        b = index * WORDS_PER_SLOT
        w, f = self.words, self.floats
        stats = []
        for i in range(min(functions, MAX_FUNCTION_COUNTERS)):
            fb = b + FUNC_BASE + FUNC_STRIDE * i
            stats.append(
                FunctionStats(
                    w[fb + F_DONE],
                    w[fb + F_FAILED],
                    f[fb + F_DURATION],
                    tuple(w[fb + F_BUCKETS : fb + F_BUCKETS + len(BUCKETS)]),
                )
            )
        return SlotView(
            pid=w[b + PID],
            state=STATE_NAMES.get(w[b + STATE], "unknown"),
            jobs_done=w[b + JOBS_DONE],
            jobs_failed=w[b + JOBS_FAILED],
            job_deadline=f[b + JOB_DEADLINE],
            rss=w[b + RSS],
            started_at=f[b + STARTED_AT],
            exit_reason=REASON_NAMES.get(w[b + EXIT_REASON], "crash"),
            servers_connected=w[b + SERVERS_CONNECTED],
            function_stats=tuple(stats),
            in_hand=w[b + IN_HAND] if w[b + PLACES] else int(w[b + STATE] == BUSY),
            places=w[b + PLACES] or 1,
        )

    def close(self) -> None:
        self.words.release()
        self.floats.release()
        self._map.close()


class SlotWriter:
    """What a worker process writes into its slot: the only code that knows the slot's layout
    on the writing side. Its fields are absolute word indexes, computed once per process, so
    the job path can use plain stores (``words[w.state] = BUSY``) with no method call; the
    per-job accounting is :meth:`job_done`, whose code the job path inlines by binding it."""

    __slots__ = (
        "deadline",
        "done",
        "exit_reason",
        "failed",
        "floats",
        "functions",
        "hand",
        "hand_word",
        "in_hand",
        "job_end",
        "job_exit",
        "pid",
        "places",
        "recorded",
        "rss",
        "servers",
        "started_at",
        "state",
        "words",
    )

    def __init__(self, board: Scoreboard, index: int, functions: Sequence[str]) -> None:
        base = board.base(index)
        self.words, self.floats = board.words, board.floats
        self.pid = base + PID
        self.state = base + STATE
        self.done = base + JOBS_DONE
        self.failed = base + JOBS_FAILED
        self.rss = base + RSS
        self.started_at = base + STARTED_AT
        self.deadline = base + JOB_DEADLINE
        self.exit_reason = base + EXIT_REASON
        self.servers = base + SERVERS_CONNECTED
        self.job_exit = base + JOB_EXIT
        self.recorded = base + RECORDED  # + an index of RECORD_REASONS, or RECORD_LOST
        self.hand = board._map, (base + HAND) * 8
        self.hand_word = base + HAND
        self.in_hand = base + IN_HAND
        self.places = base + PLACES
        #: function -> the first word of its counters (the first MAX_FUNCTION_COUNTERS only)
        self.functions = {
            name: base + FUNC_BASE + FUNC_STRIDE * i
            for i, name in enumerate(functions)
            if i < MAX_FUNCTION_COUNTERS
        }
        #: ``job_end(counters, jobs, failed, duration)``: one finished job (the process's
        #: ``jobs``-th) counted in the totals and in ``counters`` (from :meth:`counter_words`),
        #: then the state word says IDLE. In C when gearmgr/_speedups.c was built: these stores
        #: run for every job (the worker's job path).
        self.job_end: Callable[[Counters, int, bool, float], None] = self._py_job_end
        if _speedups is not None:
            self.job_end = partial(_speedups.count, self.end_words())

    def job_start(self, number: int) -> Callable[[bytes, bytes], None]:
        """``start(handle, unique)``: one job of the function at place ``number`` of the
        process's list starts: the job in hand is stored (as :meth:`job_store` does), then the
        state word says BUSY. One call on the job path; in C when gearmgr/_speedups.c was
        built."""
        if _speedups is not None:
            return partial(_speedups.job_start, self.start_words(number))
        return partial(self._py_job_start, self.job_store(number))

    def start_words(self, number: int) -> tuple[memoryview, int, int, int, int] | None:
        """What gearmgr/_serve.c stores when it starts a job of the function at place
        ``number`` (as :meth:`job_start` does); None without the C extension."""
        if _speedups is None:
            return None
        return (self.words, self.state, BUSY, self.hand_word, number + 1)

    def end_words(self) -> tuple[memoryview, int, int, int, int]:
        """What :attr:`job_end` (and gearmgr/_serve.c) stores a finished job in, in C."""
        return (self.words, self.state, IDLE, self.done, self.failed)

    def _py_job_start(
        self, store: Callable[[bytes, bytes], None], handle: bytes, unique: bytes
    ) -> None:
        """:attr:`job_start` in Python: the job in hand, then BUSY."""
        store(handle, unique)
        self.words[self.state] = BUSY

    def job_store(self, number: int) -> Callable[[bytes, bytes], None]:
        """The store that publishes the job in hand, for the function at place ``number`` of
        the process's list: ``store(handle, unique)``, one C call with no allocation (a
        handle or unique id longer than HAND_BYTES is cut)."""
        return partial(_HAND.pack_into, *self.hand, number + 1)

    def start(self, pid: int, started_at: float, rss: int) -> None:
        w = self.words
        w[self.pid] = pid
        self.floats[self.started_at] = started_at
        w[self.state] = IDLE
        w[self.rss] = rss

    def set(self, field: int, value: int) -> None:
        """A plain store into one of the fields above: ``writer.set(writer.rss, n)``."""
        self.words[field] = value

    def leaving(self, reason: int) -> None:
        self.words[self.exit_reason] = reason
        self.words[self.state] = STOPPING

    def counter_words(self, function: str) -> Counters:
        """The words :meth:`job_end` adds to for ``function``: (jobs done, the duration sum,
        the first duration bucket); jobs failed is the word after jobs done. None for a
        function past MAX_FUNCTION_COUNTERS (counted in the totals only)."""
        fb = self.functions.get(function)
        return None if fb is None else (fb + F_DONE, fb + F_DURATION, fb + F_BUCKETS)

    def job_done(self, function: str, jobs: int, failed: bool, duration: float) -> None:
        """Count one finished job (the process's ``jobs``-th) of ``function``; the state word
        is left alone (the watchdog counts the job it fails, then the process exits)."""
        self._py_job_end(self.counter_words(function), jobs, failed, duration, None)

    def _py_job_end(
        self, counters: Counters, jobs: int, failed: bool, duration: float, state: int | None = IDLE
    ) -> None:
        """:attr:`job_end` in Python: count the job, then the state word says ``state``."""
        w = self.words
        w[self.done] = jobs
        if failed:
            w[self.failed] += 1
        if counters is not None:
            done, duration_word, first_bucket = counters
            w[done + failed] += 1  # jobs done, or jobs failed (the next word)
            self.floats[duration_word] += duration
            bucket = 0 if duration <= _FIRST_BOUND else bisect_left(BUCKETS, duration)
            if bucket < _NBUCKETS:
                w[first_bucket + bucket] += 1
        if state is not None:
            w[self.state] = state
