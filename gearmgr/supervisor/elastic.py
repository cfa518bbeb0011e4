"""Elastic pools and run-time steering (a mixin of ``Supervisor``).

- the backlog (``backlog.py``) feeds the scaling decision (``scaling.py``) every ``TICK`` for
  each function whose pool is sized at run time: elastic (``max_processes`` above
  ``dedicated_count``) or set by ``gearmgr scale``. Growth adds slots to the pool (``reverse#2``);
  shrinking drains one idle process (``Pool.shrink``), never a busy one;
- ``gearmgr scale FUNCTION MIN [MAX]`` sets a function's floor and ceiling, ``pause`` takes the
  function out of the plan (its dedicated processes drain, the shared ones are replaced by
  processes that leave it out; its jobs wait at the server), ``resume`` puts it back. These
  last until the next reload or restart (:meth:`Elastic._forget_steering`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gearmgr import scoreboard as sb
from gearmgr.config import Config
from gearmgr.errors import FatalError
from gearmgr.supervisor.backlog import BacklogReader
from gearmgr.supervisor.catalog import Catalog
from gearmgr.supervisor.plan import MAX_PROCESSES, ProcessSpec, dedicated_spec, make_plan
from gearmgr.supervisor.pool import Action, Observation, Pool
from gearmgr.supervisor.scaling import TICK, Bounds, History, decide
from gearmgr.supervisor.snapshot import PoolView
from gearmgr.words import plural

log = logging.getLogger("gearmgr.supervisor")


@dataclass
class Steering:
    """What operators set at run time, and what each pool remembers."""

    scale: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (min, max)
    paused: set[str] = field(default_factory=set)
    history: dict[str, History] = field(default_factory=dict)
    next_decision: float = 0.0


def steer(config: Config, scale: Mapping[str, tuple[int, int]]) -> Config:
    """``config`` with the floors and ceilings set by ``gearmgr scale``."""
    if not scale:
        return config
    functions = dict(config.functions)
    for name, (low, high) in scale.items():
        functions[name] = dataclasses.replace(
            config.function(name), dedicated_count=low, max_processes=high if high > low else 0
        )
    return config.replace(functions=functions)


class Elastic:
    config: Config
    pool: Pool
    catalog: Catalog
    backlog: BacklogReader
    scoreboard: sb.Scoreboard
    steering: Steering
    stopping: bool
    _execute: Callable[[list[Action]], None]
    _observe_all: Callable[[], dict[int, Observation]]

    # -- the plan as steered -------------------------------------------------------------------

    def _steered(self) -> Config:
        return steer(self.config, self.steering.scale)

    def _sized(self, config: Config) -> list[str]:
        """The functions whose dedicated pools are sized at run time."""
        return [
            n
            for n in sorted(self.catalog.files)
            if n not in self.steering.paused and (config.elastic(n) or n in self.steering.scale)
        ]

    def _current_plan(self) -> list[ProcessSpec]:
        config = self._steered()
        current = {name: self.pool.numbers(name) for name in self._sized(config)}
        return make_plan(config, self.catalog.files, self.steering.paused, current)

    def _forget_steering(self) -> None:
        """A reload or a restart: the config's settings rule again."""
        if self.steering.scale or self.steering.paused:
            log.info("reload: run-time scale and pause settings dropped; the config rules")
        self.steering = Steering()

    def _bounds(self, config: Config, name: str) -> Bounds:
        settings = config.function(name)
        ceiling = max(settings.max_processes, settings.dedicated_count)
        return Bounds(
            settings.dedicated_count,
            ceiling,
            settings.backlog_per_process,
            settings.scale_down_delay,
        )

    # -- autoscaling -----------------------------------------------------------------------------

    def _autoscale_wake(self, now: float) -> float:
        """Wake for the next decision only while a pool is in motion (jobs waiting, or above
        its floor); otherwise the backlog's readings wake the loop."""
        if self.stopping:
            return float("inf")
        config = self._steered()
        for name in self._sized(config):
            size = len(self.pool.dedicated(name))
            if self.backlog.waiting(name, now) or size != self._bounds(config, name).floor:
                return max(now, self.steering.next_decision)
        return float("inf")

    def _under_pressure(self) -> bool:
        """A backlog is likely: an elastic pool below its ceiling has every process busy. Asked
        when the backlog reader asks its servers, so that their answer is read as it arrives
        rather than a second later; stops at the first idle process, so an idle supervisor
        pays one scoreboard glance a pool."""
        config = self._steered()
        glance = self.scoreboard.glance
        for name in self._sized(config):
            slots = self.pool.dedicated(name)
            if not config.elastic(name) or not slots:
                continue
            if len(slots) < self._bounds(config, name).ceiling and all(
                s.pid and glance(s.index)[0] == "busy" for s in slots
            ):
                return True
        return False

    def _autoscale(self, now: float, seen: Mapping[int, Observation]) -> list[Action]:
        if now < self.steering.next_decision:
            return []
        self.steering.next_decision = now + TICK
        config = self._steered()
        actions: list[Action] = []
        for name in self._sized(config):
            bounds = self._bounds(config, name)
            size = len(self.pool.dedicated(name))
            waiting = self.backlog.waiting(name, now) if config.elastic(name) else 0
            if name in self.catalog.broken:
                waiting = None  # a new process could not load it: hold
            room = min(MAX_PROCESSES - len(self.pool.slots), self.pool.free_indexes())
            history = self.steering.history.get(name, History())
            decision = decide(size, bounds, waiting, history, now, room)
            history = decision.history
            if decision.target > size:
                taken = set(self.pool.numbers(name))
                free = (i for i in itertools.count() if i not in taken)
                numbers = [next(free) for _ in range(decision.target - size)]
                self.pool.grow([dedicated_spec(config, name, i) for i in numbers])
                log.info(
                    "pool of %s grows from %d to %d (%s)",
                    name,
                    size,
                    decision.target,
                    f"{plural(waiting or 0, 'job')} waiting" if waiting else "below its floor",
                )
            elif decision.target < size:
                # which process is idle: the turn's observations leave most slots out
                drained = self.pool.shrink(name, self._observe_all(), now)
                if drained:
                    history = history.shrunk(now)
                    actions += drained
            self.steering.history[name] = history
        return actions

    # -- steering --------------------------------------------------------------------------------

    def _steer(self, request: dict[str, str]) -> dict[str, Any]:
        """``scale``, ``pause``, ``resume``: answered with what changed, and logged."""
        command, name = request["command"], request["function"]
        if name not in self.catalog.files:
            served = ", ".join(sorted(self.catalog.files)) or "none"
            return {"ok": False, "error": f"no function {name!r}; functions: {served}"}
        if self.stopping:
            return {"ok": False, "error": "the supervisor is stopping"}
        config = self._steered()
        before = self._bounds(config, name)
        kept = (dict(self.steering.scale), set(self.steering.paused))
        if command == "scale":
            try:
                low, high = int(request["min"]), int(request["max"])
            except ValueError:
                return {"ok": False, "error": "MIN and MAX must be whole numbers"}
            if not 0 <= low <= high <= MAX_PROCESSES:
                return {"ok": False, "error": f"expected 0 <= MIN <= MAX <= {MAX_PROCESSES}"}
            self.steering.scale[name] = (low, high)
            self.steering.next_decision = 0.0
            changed = (
                f"{name}: {before.floor}..{before.ceiling} -> {low}..{high} processes"
                f" (now {len(self.pool.dedicated(name))})"
            )
            if name in self.steering.paused:
                changed += f"; {name} is paused: `gearmgr resume {name}` starts them"
        elif command == "pause":
            if name in self.steering.paused:
                return {"ok": True, "changed": f"{name} was already paused"}
            self.steering.paused.add(name)
            shared = sum(1 for s in self.pool.slots if len(s.spec.functions) > 1)
            dedicated = len(self.pool.dedicated(name))
            replaced = f", {plural(shared, 'shared process')} replaced without it" if shared else ""
            changed = (
                f"{name} paused: {plural(dedicated, 'process')} of its own drain{replaced};"
                " its jobs wait at the job servers"
            )
        else:
            if name not in self.steering.paused:
                return {"ok": True, "changed": f"{name} was not paused"}
            self.steering.paused.discard(name)
            changed = f"{name} resumed"
        try:
            self._reconcile_steered()
        except FatalError as exc:  # a plan the supervisor cannot hold: refused, nothing changes
            self.steering.scale, self.steering.paused = kept
            return {"ok": False, "error": str(exc)}
        log.info("%s requested: %s", command, changed)
        return {"ok": True, "changed": changed}

    def _reconcile_steered(self) -> None:
        plan = self._current_plan()
        self.pool.check_capacity(plan)
        self._execute(self.pool.reconcile(plan, set(), self.catalog.broken, time.monotonic()))

    # -- what status shows -------------------------------------------------------------------------

    def _pool_views(self, now: float) -> dict[str, PoolView]:
        config = self._steered()
        views = {}
        for name in sorted(self.catalog.files):
            bounds = self._bounds(config, name)
            paused = name in self.steering.paused
            fresh = self.backlog.waiting(name, now) is not None
            queued, running = self.backlog.counts(name, now)
            views[name] = PoolView(
                queued=queued if fresh else None,
                running=running if fresh else None,
                target=0 if paused else len(self.pool.dedicated(name)),
                min=bounds.floor,
                max=bounds.ceiling,
                paused=paused,
            )
        return views
