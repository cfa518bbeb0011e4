"""The pool: the planned slots, the processes draining, the rolling replacement, the scoreboard
indexes. Pure decisions: every method takes ``now`` (and what the scoreboard showed) and
returns actions for the arbiter to carry out; nothing here forks, signals or reads the clock.

Rolling replacement is its own small state machine, one slot at a time so the pool never
empties::

    queued --start--> STARTING --registered (or REPLACE_WAIT passed)--> DONE: old one drains
                          |
                          +--new one died before registering--> ABANDONED: old one stays
"""

from __future__ import annotations

import enum
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gearmgr.errors import FatalError
from gearmgr.supervisor.lifecycle import ExitReason, ProcessState, Slot
from gearmgr.supervisor.plan import MAX_PROCESSES, ProcessSpec

_STARTING, _REGISTERED, _STOPPING = (
    ProcessState.STARTING,
    ProcessState.REGISTERED,
    ProcessState.STOPPING,
)  # module constants: an enum member looked up on its class costs a call per slot
log = logging.getLogger("gearmgr.supervisor")

TIMEOUT_GRACE = 5.0  # a job past its timeout by this much is killed by the supervisor
REPLACE_POLL = 0.01  # how often a rolling replacement checks that the new process registered
REPLACE_WAIT = 10.0  # longest wait for a replacement to register before draining the old one


@dataclass(frozen=True)
class Spawn:
    slot: Slot


@dataclass(frozen=True)
class Stop:
    """SIGTERM to the process alone: it finishes its job in hand and exits."""

    slot: Slot


@dataclass(frozen=True)
class Kill:
    """SIGKILL to the process's whole group."""

    slot: Slot


@dataclass(frozen=True)
class Release:
    """Clear a scoreboard slot that no process holds any more."""

    index: int


Action = Spawn | Stop | Kill | Release


@dataclass(frozen=True)
class Observation:
    """What the scoreboard shows of one live process."""

    state: str
    servers_connected: int
    job_deadline: float


class Step(enum.Enum):
    STARTING = "starting"  # the new process runs, the old one still serves
    DONE = "done"  # the new one registered (or REPLACE_WAIT passed): the old one drains
    ABANDONED = "abandoned"  # the new one died before registering: the old one stays


@dataclass
class Replacement:
    old: Slot
    new: Slot
    since: float
    step: Step = Step.STARTING

    def advance(self, now: float) -> Step:
        if self.step is Step.STARTING:
            if not self.new.state.alive:
                self.step = Step.ABANDONED
            elif self.new.state is ProcessState.REGISTERED or now - self.since > REPLACE_WAIT:
                self.step = Step.DONE
        return self.step


class Pool:
    def __init__(self, capacity: int, spawn_delay: float = 0.0) -> None:
        self.capacity = capacity
        self.spawn_delay = spawn_delay
        self.slots: list[Slot] = []
        self.draining: list[Slot] = []  # processes of slots no longer in the plan, or replaced
        self.replacing: deque[tuple[Slot, ProcessSpec]] = deque()
        self.replacement: Replacement | None = None
        self.restarts: Counter[tuple[str, str]] = Counter()
        self._free = list(range(capacity - 1, -1, -1))
        self._spawn_at = 0.0  # start-up pacing by spawn_delay
        self._all_started_once = False

    # -- membership ----------------------------------------------------------------------------

    def check_capacity(self, plan: list[ProcessSpec]) -> None:
        """Refuse a plan the scoreboard cannot hold, with room for the processes that drain
        while their replacements start."""
        if len(plan) > MAX_PROCESSES:
            raise FatalError(
                f"the config plans {len(plan)} processes; gearmgr runs at most {MAX_PROCESSES}"
            )
        busy = len(self.draining) + (1 if self.replacement else 0)
        if len(plan) + busy > self.capacity:
            raise FatalError(
                f"the new plan needs {len(plan)} process slots and {busy} are still draining; "
                "try again once they have stopped"
            )

    def start(self, plan: list[ProcessSpec]) -> None:
        self.slots = [Slot(spec, self._take_index()) for spec in plan]

    def all_slots(self) -> list[Slot]:
        old = self.replacement.old if self.replacement else None
        extra = [old] if old is not None and old not in self.draining else []
        return self.slots + self.draining + extra

    def children(self) -> list[Slot]:
        return [s for s in self.all_slots() if s.pid]

    def by_pid(self, pid: int) -> Slot | None:
        for slot in self.all_slots():
            if slot.pid == pid:
                return slot
        return None

    def _take_index(self) -> int:
        if not self._free:
            raise FatalError(f"more than {self.capacity} processes planned")
        return self._free.pop()

    def _release(self, index: int) -> Release:
        self._free.append(index)
        return Release(index)

    # -- reconciling with a new plan -------------------------------------------------------------

    def reconcile(
        self, plan: list[ProcessSpec], changed: set[str], broken: Iterable[str], now: float
    ) -> list[Action]:
        """Start what the plan adds, drain what it drops, queue for replacement one by one what
        changed (its spec, or the code of one of its functions)."""
        broken = set(broken)
        by_key = {slot.key: slot for slot in self.slots}
        slots: list[Slot] = []
        replaced = 0
        for spec in plan:
            slot = by_key.pop(spec.key, None)
            if slot is None:
                slots.append(Slot(spec, self._take_index()))
                continue
            slots.append(slot)
            if slot.spec != spec or set(spec.functions) & changed:
                self.queue_replacement(slot, spec, broken)
                replaced += 1
        actions: list[Action] = []
        for slot in by_key.values():
            actions += self._retire(slot, now)
        added = len(slots) - (len(self.slots) - len(by_key))
        self.slots = slots
        log.info(
            "reconciled: %s planned; %d added, %d to replace one by one, %d retired",
            f"{len(plan)} process" + ("" if len(plan) == 1 else "es"),
            added,
            replaced,
            len(by_key),
        )
        return actions

    def queue_replacement(self, slot: Slot, spec: ProcessSpec, broken: set[str]) -> None:
        if slot.pid and set(spec.functions) <= broken:
            return  # a new process could not load it: the running one keeps serving
        self.replacing = deque((s, p) for s, p in self.replacing if s is not slot)
        self.replacing.append((slot, spec))

    def replace_functions(self, names: set[str], broken: Iterable[str]) -> int:
        """Replace, one by one, the processes that serve any of ``names`` (code changed)."""
        count = 0
        for slot in self.slots:
            if set(slot.spec.functions) & names:
                self.queue_replacement(slot, slot.spec, set(broken))
                count += 1
        return count

    def heal(self, broken_since: Mapping[str, float]) -> list[str]:
        """Broken files that load again: a dedicated process started after the file broke has
        loaded it. Queues the shared processes, which left it out, for replacement so they
        serve it too; returns the names healed."""
        healed = []
        for name, since in broken_since.items():
            for slot in self.slots:
                if slot.spec.functions != (name,) or not slot.code_loaded:
                    continue
                if slot.state is _STOPPING or slot.started_at <= since:
                    continue  # it runs code imported before the file broke
                healed.append(name)
                rest = set(broken_since) - set(healed)
                for shared in self.slots:
                    if len(shared.spec.functions) > 1 and name in shared.spec.functions:
                        self.queue_replacement(shared, shared.spec, rest)
                break
        return healed

    # -- elastic pools ---------------------------------------------------------------------------

    def dedicated(self, name: str) -> list[Slot]:
        """The planned processes of function ``name``'s dedicated pool."""
        return [s for s in self.slots if s.spec.functions == (name,) and s.spec.group == name]

    def numbers(self, name: str) -> list[int]:
        """The numbers of ``name``'s dedicated processes (``reverse#2`` -> 2)."""
        return [int(s.key.rpartition("#")[2]) for s in self.dedicated(name)]

    def free_indexes(self) -> int:
        """How many more scoreboard slots there are."""
        return len(self._free)

    def grow(self, specs: list[ProcessSpec]) -> None:
        """Add slots to the plan; they start with the next starts due."""
        self.slots += [Slot(spec, self._take_index()) for spec in specs]

    def shrink(self, name: str, seen: Mapping[int, Observation], now: float) -> list[Action]:
        """Take one process out of ``name``'s dedicated pool: one that is not running (backing
        off) goes at once; else an idle one (the scoreboard says so) is told to drain. A busy
        process is never stopped to shrink a pool: with none idle, nothing happens (empty list).
        The highest number goes first among equals."""
        slots = sorted(self.dedicated(name), key=lambda s: -int(s.key.rpartition("#")[2]))
        if self.replacement is not None:
            slots = [s for s in slots if s is not self.replacement.new]
        for slot in slots:
            if not slot.pid:
                self.slots.remove(slot)
                return [self._release(slot.index)]
        for slot in slots:
            obs = seen.get(slot.index)
            if slot.state is ProcessState.REGISTERED and obs is not None and obs.state == "idle":
                self.slots.remove(slot)
                self.replacing = deque((s, p) for s, p in self.replacing if s is not slot)
                log.info("pool of %s shrinks: process %d (%s) drains", name, slot.pid, slot.key)
                return self._retire(slot, now)
        return []

    def _retire(self, slot: Slot, now: float) -> list[Action]:
        if slot.pid:
            self.draining.append(slot)
            return self._stop(slot, now, ExitReason.RETIRE)
        return [self._release(slot.index)]

    # -- the loop's questions ------------------------------------------------------------------

    def manage(self, now: float, seen: Mapping[int, Observation]) -> list[Action]:
        """Everything due at ``now``, given what the scoreboard shows of the live processes
        (by index): registrations, stop deadlines, job timeouts, the rolling replacement and
        the starts due."""
        self.observe(seen)
        actions = self.enforce_stop_deadlines(now)
        actions += self._enforce_job_timeouts(now, seen)
        actions += self._advance_replacement(now)
        starting = {id(a.slot) for a in actions if isinstance(a, Spawn)}
        actions += self._spawn_due(now, starting)
        return actions

    def observe(self, seen: Mapping[int, Observation]) -> None:
        """Which starting processes have loaded their code and registered."""
        if not seen:
            return
        for slot in self.slots:
            obs = seen.get(slot.index)
            if obs is not None and slot.state is ProcessState.STARTING:
                slot.observe(obs.state, obs.servers_connected)

    def enforce_stop_deadlines(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for slot in self.all_slots():
            if slot.state is _STOPPING and slot.pid and now >= slot.kill_at:
                log.warning(
                    "process %d (%s) did not stop within %gs: SIGKILL",
                    slot.pid,
                    slot.key,
                    slot.spec.limits.graceful_timeout,
                )
                slot.killed(now)
                actions.append(Kill(slot))
        return actions

    def _enforce_job_timeouts(self, now: float, seen: Mapping[int, Observation]) -> list[Action]:
        """Backstop for the worker's own timeout watchdog (which cannot run while a job holds
        the GIL): kill a process whose job is past its deadline by TIMEOUT_GRACE."""
        actions: list[Action] = []
        if not any(obs.job_deadline for obs in seen.values()):
            return actions  # no job in hand has a deadline: nothing to look at
        for slot in self.all_slots():
            if not slot.pid or slot.stop_reason is ExitReason.TIMEOUT:
                continue
            obs = seen.get(slot.index)
            if obs is not None and obs.job_deadline and now > obs.job_deadline + TIMEOUT_GRACE:
                log.error(
                    "process %d (%s): job past its timeout and the worker did not fail it; "
                    "SIGKILL (gearmand re-queues the job)",
                    slot.pid,
                    slot.key,
                )
                slot.stop(now, 0, ExitReason.TIMEOUT, force=True)
                slot.killed(now)  # no second SIGKILL at the stop deadline
                actions.append(Kill(slot))
        return actions

    def _advance_replacement(self, now: float) -> list[Action]:
        """Rolling replacement: start the new process, wait until it has registered, then
        drain the old one; one slot at a time, so the pool never empties."""
        actions: list[Action] = []
        rep = self.replacement
        if rep is not None:
            step = rep.advance(now)
            if step is Step.STARTING:
                return actions
            self.replacement = None
            old, new = rep.old, rep.new
            if step is Step.ABANDONED:
                # The new process died before it registered (e.g. its file broke): keep the old
                # one serving rather than leave the function with nothing.
                if old.pid:
                    log.warning(
                        "the replacement for %s died before registering; process %d stays",
                        old.key,
                        old.pid,
                    )
                    self.slots[self.slots.index(new)] = old
                    return [self._release(new.index)]
                return [self._release(old.index)]  # the new slot retries with its backoff
            if old.pid:
                self.draining.append(old)
                actions += self._stop(old, now, ExitReason.RELOAD)
            else:
                actions.append(self._release(old.index))
            self.restarts[(old.spec.group, "reload")] += 1
        while self.replacing and self.replacement is None:
            old, spec = self.replacing.popleft()
            if old not in self.slots:
                continue
            if not old.pid:
                old.spec = spec
                continue
            new = Slot(spec, self._take_index())
            new.last_exit = ExitReason.RELOAD  # the slot's story, as `gearmgr top` shows it
            self.slots[self.slots.index(old)] = new
            self.replacement = Replacement(old, new, now)
            actions.append(Spawn(new))
        return actions

    def _spawn_due(self, now: float, starting: set[int]) -> list[Action]:
        actions: list[Action] = []
        for slot in self.slots:
            if not slot.due(now) or id(slot) in starting:
                continue
            if now < self._spawn_at:
                return actions
            actions.append(Spawn(slot))
            if self.spawn_delay and not self._all_started_once:
                self._spawn_at = now + self.spawn_delay
                return actions
        self._all_started_once = True
        return actions

    # -- stopping and exits --------------------------------------------------------------------

    def _stop(self, slot: Slot, now: float, reason: ExitReason) -> list[Action]:
        slot.stop(now, slot.spec.limits.graceful_timeout, reason)
        return [Stop(slot)]

    def stop_all(self, now: float) -> list[Action]:
        """Graceful stop of every process."""
        actions: list[Action] = []
        for slot in self.children():
            actions += self._stop(slot, now, ExitReason.STOP)
        return actions

    def kill_all(self, now: float) -> list[Action]:
        """Every process at once (QUIT, a second TERM, a fatal error): logged as stopped."""
        actions: list[Action] = []
        for slot in self.children():
            slot.stop(now, 3600, ExitReason.STOP)
            actions.append(Kill(slot))
        return actions

    def drained(self, slot: Slot) -> Release | None:
        """A process has been reaped: if it was draining, its place is gone."""
        if slot not in self.draining:
            return None
        self.draining.remove(slot)
        return self._release(slot.index)

    def next_wake(self, now: float, stopping: bool) -> float:
        """The pool's next deadline: a start due, a stop deadline, a replacement's poll."""
        wake = float("inf")
        for slot in self.all_slots():
            if slot.state is _STOPPING:
                wake = min(wake, slot.kill_at)
        if stopping:
            return wake
        for slot in self.slots:
            state = slot.state
            if not (state is _REGISTERED or state is _STARTING or state is _STOPPING):
                wake = min(wake, max(slot.next_start, self._spawn_at))
        if self.replacement is not None or self.replacing:
            wake = min(wake, now + REPLACE_POLL)  # a rolling replacement waits on a registration
        return wake
