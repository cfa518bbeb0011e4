"""The reaping half of the Supervisor (a mixin: arbiter.py holds the loop): signals to worker
processes, and what happens when one is gone — its exit decoded and logged, its counters
kept, its process group and what its jobs left behind ended, its slot told."""

from __future__ import annotations

import logging
import os
import signal
import time

from gearmgr import scoreboard as sb
from gearmgr.children import end_strays
from gearmgr.config import Config
from gearmgr.supervisor.catalog import Scan
from gearmgr.supervisor.embedded import EmbeddedServer
from gearmgr.supervisor.lifecycle import ExitReason, Slot
from gearmgr.supervisor.poison import PoisonWatch
from gearmgr.supervisor.pool import Action, Pool
from gearmgr.supervisor.probe import ServerProbe
from gearmgr.supervisor.reload import ReloadSequence
from gearmgr.supervisor.spawner import describe_exit

log = logging.getLogger("gearmgr.supervisor")


class Reaping:
    """Signals to workers and the reaping of every child of the supervisor."""

    pool: Pool
    probe: ServerProbe
    embedded: EmbeddedServer | None
    reloads: ReloadSequence[Scan]
    scoreboard: sb.Scoreboard
    loaded: dict[int, list[str]]
    totals: dict[str, sb.FunctionStats]
    stopping: bool
    poison: PoisonWatch
    config: Config

    def _execute(self, actions: list[Action]) -> None:
        raise NotImplementedError

    def _embedded_died(self, status: int) -> None:
        raise NotImplementedError

    def _signal(self, slot: Slot, sig: int) -> None:
        """TERM and USR1 go to the worker alone (a graceful stop lets the job in hand finish,
        helpers it started included); SIGKILL takes its whole process group."""
        try:
            if sig == signal.SIGKILL:
                os.killpg(slot.pid, sig)
            else:
                os.kill(slot.pid, sig)
        except (ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:  # the group is gone or not its own yet: the process alone
                try:
                    os.kill(slot.pid, sig)
                except ProcessLookupError:
                    pass

    @staticmethod
    def _end_group(pid: int) -> None:
        """A worker was reaped: whatever its jobs forked (its process group) goes with it, so
        nothing keeps its job-server sockets or outlives a stop. The group's id cannot have
        been reused while a member of the group lives."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # -- reaping -------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap every exited child: decode why it went, record the restart, free the slot."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.embedded and pid == self.embedded.pid:
                self._embedded_died(status)
                continue
            job = self.reloads.scan.validation if self.reloads.scan is not None else None
            if job is not None and pid == job.pid:
                job.status = status  # the validation fork: its pipe tells the rest
                continue
            slot = self.pool.by_pid(pid)
            if slot is None:
                log.debug("reaped unknown child %d (%s)", pid, describe_exit(status))
                continue
            self._end_group(pid)
            self._child_exited(slot, status)
            self._end_strays()

    def _end_strays(self) -> None:
        """A worker is gone: what its jobs left behind outside its process group (a setsid
        helper, a daemon) was handed to us, its subreaper: end it."""
        known = {s.pid for s in self.pool.children()}
        if self.embedded and self.embedded.pid:
            known.add(self.embedded.pid)
        if self.reloads.scan is not None and self.reloads.scan.validation is not None:
            known.add(self.reloads.scan.validation.pid)
        known |= self.probe.child_pids()
        for pid in end_strays(known):
            log.info("ended process %d, left behind by a job of a worker that is gone", pid)

    def _child_exited(self, slot: Slot, status: int) -> None:
        now = time.monotonic()
        view = self.scoreboard.read(slot.index)
        busy = view.state == "busy" or view.job_deadline > 0
        busy = busy or slot.stop_reason is ExitReason.TIMEOUT
        pid = slot.pid
        poison_after = self._poison_after
        self.poison.gone(slot, self.loaded.get(slot.index, []), busy, poison_after, now)
        self._add_totals(slot.index)
        exit = slot.exited(
            now,
            exit_ok=os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
            reported=ExitReason.from_label(view.exit_reason),
            busy=busy,
            jobs=(view.jobs_done, view.jobs_failed),
        )
        how = describe_exit(status, killed_by_us=exit.asked)
        release = self.pool.drained(slot)
        if release is not None:
            self._execute([release])
            log.info(
                "process %d (%s) %s after draining (%s)", pid, slot.key, how, exit.reason.label
            )
            return
        if exit.restart is None:
            log.info("process %d (%s) %s", pid, slot.key, how)
            return
        self.pool.restarts[(slot.spec.group, exit.restart.label)] += 1
        level = logging.INFO if exit.restart is not ExitReason.CRASH else logging.WARNING
        after = f"; restarting in {exit.delay:.1f}s" if exit.delay else "; restarting"
        if exit.reason is ExitReason.IMPORT:
            detail = "none of its worker files could be loaded"
        elif exit.reason is ExitReason.JOB_EXIT:  # counted as a crash, backoff included
            detail = sb.describe_job_exit(self.scoreboard.job_exit(slot.index))
        else:
            detail = exit.restart.label
        log.log(
            level,
            "process %d (%s) %s (%s)%s",
            pid,
            slot.key,
            how,
            detail,
            after if not self.stopping else "",
        )
        self.scoreboard.clear(slot.index)

    def _poison_after(self, function: str) -> int:
        return self.config.function(function).poison_after

    def _add_totals(self, index: int) -> None:
        """Keep the job counters of a process that is gone (its scoreboard slot is reused)."""
        order = self.loaded.pop(index, [])
        stats = self.scoreboard.read(index, len(order)).function_stats
        for name, st in zip(order, stats, strict=False):
            self.totals[name] = self.totals.get(name, sb.FunctionStats()) + st
