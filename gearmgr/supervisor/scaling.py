"""The scaling decision of an elastic pool, as a pure function of (pool size, bounds, backlog
history, now): no processes, no sockets, no clock. The supervisor asks it every :data:`TICK`
for every elastic function and carries out the answer through the pool (grow by adding slots,
shrink by draining one idle process).

The rules (docs/operations.md, "Elastic pools"):

- **growth** at once toward ``floor + ceil(waiting / backlog_per_process)``, by
  :data:`GROW_BURST` processes or by doubling the pool per tick, whichever is more (php-fpm's
  ondemand spawner starts up to 32 a second, doubling), so the ceiling is reached within a
  second or two of a backlog; capped by ``max_processes`` and by the room left under the
  supervisor's process limit. The aim is anchored on the floor and the last reading, not on
  the current size, so a reading that is a second old cannot make the pool grow twice;
- a pool with floor 0 and waiting jobs starts a process at once (scale from zero);
- **shrinking** one process per step, only once the function has had no waiting job for
  ``scale_down_delay`` and the pool has not changed size for as long; never below the floor;
- **no flapping**: a growth soon after a shrink (within ``scale_down_delay``) means the shrink
  was a mistake, so the next shrink waits twice as long (up to :data:`MAX_REGRETS` doublings);
  the penalty is forgotten after ten quiet delays without growth.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

TICK = 0.25  # seconds between decisions
GROW_BURST = 8  # a growing pool adds at least this many processes a tick (32 a second)
MAX_REGRETS = 3  # the shrink delay doubles at most this many times
NEVER = -math.inf


@dataclass(frozen=True)
class Bounds:
    """What bounds one function's pool: its floor (``dedicated_count``, or ``scale MIN``),
    its ceiling (``max_processes``, or ``scale MIN MAX``), and how it reacts."""

    floor: int
    ceiling: int
    per_process: int = 1
    scale_down_delay: float = 30.0


@dataclass(frozen=True)
class History:
    """What one function's pool remembers between decisions."""

    last_waiting: float = NEVER  # when a job was last seen waiting
    last_change: float = NEVER  # when the size last changed
    last_grow: float = NEVER
    last_shrink: float = NEVER
    regrets: int = 0  # growths that followed a shrink too soon

    def shrunk(self, now: float) -> History:
        """The pool did drain a process (it had an idle one)."""
        return dataclasses.replace(self, last_change=now, last_shrink=now)

    def shrink_delay(self, bounds: Bounds) -> float:
        return bounds.scale_down_delay * (2**self.regrets)


@dataclass(frozen=True)
class Decision:
    target: int  # the size the pool should have; below ``size``: drain one idle process
    history: History


def decide(
    size: int, bounds: Bounds, waiting: int | None, history: History, now: float, room: int
) -> Decision:
    """The pool's target size at ``now``.

    ``size`` is the function's dedicated processes (running or starting), ``waiting`` the jobs
    of the function waiting at the job servers at the last reading (None: no reading yet, or
    every server unreachable: hold), ``room`` how many more processes the supervisor may start.
    A target below ``size`` is always ``size - 1``: one process per step."""
    floor = bounds.floor
    ceiling = max(floor, min(bounds.ceiling, size + max(0, room)))
    if size < floor:
        return Decision(min(floor, ceiling), history)
    if size > max(floor, bounds.ceiling):  # the ceiling came down (`gearmgr scale`)
        return Decision(size - 1, history)
    if history.regrets and now - history.last_grow >= 10 * bounds.scale_down_delay:
        history = dataclasses.replace(history, regrets=0)
    if waiting is None:
        return Decision(size, history)
    if waiting > 0:
        history = dataclasses.replace(history, last_waiting=now)
        wanted = floor + math.ceil(waiting / bounds.per_process)
        if wanted <= size or size >= ceiling:
            return Decision(size, history)
        target = min(wanted, ceiling, size + max(size, GROW_BURST))
        regrets = history.regrets
        if now - history.last_shrink < bounds.scale_down_delay:
            regrets = min(regrets + 1, MAX_REGRETS)
        history = dataclasses.replace(history, last_change=now, last_grow=now, regrets=regrets)
        return Decision(target, history)
    if size > floor:
        quiet_since = max(history.last_waiting, history.last_change)
        if now - quiet_since >= history.shrink_delay(bounds):
            return Decision(size - 1, history)
    return Decision(size, history)
