"""The supervisor's loop, in the style of gunicorn's arbiter.

Signal handlers only record the signal; the loop waits on one selector (the wakeup pipe of
``signal.set_wakeup_fd``, the control and metrics listeners, the probe, the watcher, the
validation fork), handles each recorded signal by a method named for it, reaps every exited
child, asks the pool what to do and carries out its actions (fork, signal, clear a scoreboard
slot). The decisions are the pool's (pool.py) and the lifecycle's (lifecycle.py); reloads are in
reloading.py, start-up and the services around the loop in services.py. The supervisor never
imports worker code and never touches a job; workers fetch their own jobs from gearmand and
report through the shared-memory scoreboard.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import sys
import time
from collections import deque
from collections.abc import Callable

from gearmgr import scoreboard as sb
from gearmgr.config import Config
from gearmgr.errors import ExitCode, FatalError, exception_text
from gearmgr.failures.quarantine import QuarantineBoard
from gearmgr.logs import reopen_log_file, setup_logging
from gearmgr.ops.control import ControlServer
from gearmgr.ops.listener import Listener
from gearmgr.ops.metrics import MetricsServer
from gearmgr.ops.pidfile import PidFile
from gearmgr.ops.systemd import Notifier, Readiness
from gearmgr.ops.top import TopFeed
from gearmgr.supervisor.backlog import BacklogReader
from gearmgr.supervisor.catalog import Catalog, Scan
from gearmgr.supervisor.elastic import Elastic, Steering
from gearmgr.supervisor.embedded import EmbeddedServer
from gearmgr.supervisor.lifecycle import Lifecycle, ProcessState, Slot
from gearmgr.supervisor.plan import worker_spec
from gearmgr.supervisor.poison import PoisonWatch, record_settings
from gearmgr.supervisor.pool import Action, Kill, Observation, Pool, Release, Spawn, Stop
from gearmgr.supervisor.probe import ServerProbe
from gearmgr.supervisor.reaping import Reaping
from gearmgr.supervisor.reload import ReloadSequence
from gearmgr.supervisor.reloading import Reloading
from gearmgr.supervisor.services import Services, preload
from gearmgr.supervisor.spawner import HANDLED_SIGNALS, STRAY_SIGNALS, describe_exit, fork_all
from gearmgr.supervisor.watch import Watcher
from gearmgr.words import plural

__all__ = ["Supervisor", "describe_exit", "preload"]

log = logging.getLogger("gearmgr.supervisor")

#: A process about to be forked: its slot, what it runs, what to call it if it crashes.
_Prepared = tuple[Slot, Callable[[], int], str]

TICK = 1.0
SERVER_CHECK = 5.0  # seconds between checks of the job servers


INTERNAL_ERRORS = 10  # this many internal errors ...
INTERNAL_WINDOW = 60.0  # ... within this many seconds stop the supervisor


class Supervisor(Services, Reloading, Reaping, Elastic):
    """Runs the processes that ``config`` plans until it is signalled to stop."""

    def __init__(
        self, config: Config, *, allow_root: bool | None = None, log_level: str | None = None
    ) -> None:
        """``log_level`` overrides the config's (``gearmgr run -v``), across reloads too."""
        self._log_level = log_level
        config = self._with_overrides(config)
        self.config = config
        if allow_root is None:
            allow_root = os.environ.get("GEARMGR_ALLOW_ROOT") == "1"
        self.allow_root = allow_root
        self.catalog = Catalog()
        self.scoreboard = sb.Scoreboard()
        self.poison = PoisonWatch(self.scoreboard, QuarantineBoard())
        self.pool = Pool(self.scoreboard.capacity, config.spawn_delay)
        self.reloads: ReloadSequence[Scan] = ReloadSequence()
        self._signals: deque[int] = deque()
        self._selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = os.pipe()
        self.stopping = False
        self.stop_requests = 0
        self.embedded: EmbeddedServer | None = None
        self.embedded_life = Lifecycle()  # the embedded gearmand's restarts
        self.started_at = time.time()
        self.pid = os.getpid()
        self.pid_file: PidFile | None = None
        self.control: ControlServer | None = None
        self.totals: dict[str, sb.FunctionStats] = {}  # counters of exited processes
        self.loaded: dict[int, list[str]] = {}  # scoreboard index -> function counter order
        self.watcher: Watcher | None = None
        self.metrics: MetricsServer | None = None
        self.notifier = Notifier()
        self.readiness = Readiness(self.notifier)
        self.probe = ServerProbe(
            config.servers,
            self._server_checked,
            interval=SERVER_CHECK,
            in_child=self._in_validation_child,
        )
        self.servers_up: dict[str, bool] = {}
        self.backlog = BacklogReader(
            config.servers,
            self.probe.resolved,
            pressure=self._under_pressure,
            answered=self.probe.vouch,
        )
        self.steering = Steering()
        self.top_feed = TopFeed()  # what `gearmgr top` compares its refreshes with

    # -- running -------------------------------------------------------------------------------

    def run(self) -> int:
        """What ``gearmgr run`` does: returns the exit code."""
        logging.raiseExceptions = False  # a log that cannot be written loses lines, not us
        try:
            setup_logging(self.config.log_level, self.config.log_file)
        except OSError as exc:  # nothing started yet: one line and out
            print(f"gearmgr: log_file {self.config.log_file}: {exc.strerror}", file=sys.stderr)
            return ExitCode.FATAL
        try:
            self._start()
            self._loop()
        except FatalError as exc:
            return self._die(str(exc), exc.code)
        except Exception as exc:  # a bug: still one clear line, and no orphans left behind
            log.exception("internal error")
            return self._die(f"internal error: {type(exc).__name__}: {exc}", ExitCode.FATAL)
        self._final_cleanup()
        log.info("stopped")
        return ExitCode.OK

    def _with_overrides(self, config: Config) -> Config:
        return config.replace(log_level=self._log_level) if self._log_level else config

    def _die(self, message: str, code: int) -> int:
        log.error("%s", message)
        if self.config.log_file:  # the one clear line goes to stderr too
            print(f"gearmgr: {message}", file=sys.stderr)
        self._execute(self.pool.kill_all(time.monotonic()))
        self._final_cleanup()
        return code

    def _loop(self) -> None:
        self._selector.register(self._wakeup_r, selectors.EVENT_READ)
        self.probe.attach(self._selector)
        self.backlog.attach(self._selector)
        for listener in (self.control, self.metrics):
            if listener is not None:
                listener.attach(self._selector)
        self._start_watcher(self.config)
        errors: deque[float] = deque(maxlen=INTERNAL_ERRORS)
        while True:
            try:
                if self._turn():
                    return
            except FatalError:
                raise
            except Exception as exc:  # a bug: the workers keep serving; a loop of it is fatal
                now = time.monotonic()
                errors.append(now)
                log.error(
                    "internal error, carrying on: %s",
                    exception_text(exc),
                    exc_info=True,
                )
                if len(errors) == INTERNAL_ERRORS and now - errors[0] < INTERNAL_WINDOW:
                    raise
                time.sleep(0.05)  # never a busy loop of the same error

    def _turn(self) -> bool:
        """One turn of the loop; True once a stop has ended every process."""
        now = time.monotonic()
        for key, _ in self._selector.select(self._wait_time(now)):
            if isinstance(key.data, (Listener, ServerProbe, BacklogReader)):
                key.data.ready(key.fileobj)
            elif key.data == "watch" and self.watcher is not None:
                self.watcher.read(time.monotonic())
            elif key.data == "validation" and self.reloads.scan is not None:
                job = self.reloads.scan.validation
                if job is not None and job.read():
                    self._finish_scan()
        self._drain_wakeup()
        while self._signals:
            self._dispatch(self._signals.popleft())
        self._reap()
        seen = self._observations()
        self.pool.observe(seen)
        now = time.monotonic()
        self._notify_systemd(now)
        self.probe.tick(now)
        self.backlog.tick(now)
        for listener in (self.control, self.metrics):
            if listener is not None:
                listener.sweep(now)
        if self.stopping:
            self._execute(self.pool.enforce_stop_deadlines(now))
            return not self.pool.children()
        if self._validation_due(now):
            self._finish_scan()
        if self.watcher is not None and self.watcher.due(now):
            self.code_changed()
        self._heal_broken()
        self._restart_embedded(now)
        self._execute(self._autoscale(now, seen))
        self._execute(self.pool.manage(now, seen))
        return False

    def _wait_time(self, now: float) -> float:
        wake = min(now + TICK, self.pool.next_wake(now, self.stopping))
        if self.stopping:  # nothing starts any more: wait for exits and kill deadlines
            return max(0.0, wake - now)
        if self.embedded is not None and not self.embedded_life.state.alive:
            wake = min(wake, self.embedded_life.next_start)
        scan = self.reloads.scan
        if scan is not None and scan.validation is not None:
            wake = min(wake, scan.validation.deadline)
        wake = min(wake, self.probe.next_wake(), self.backlog.next_wake())
        wake = min(wake, self._autoscale_wake(now))
        wake = min(wake, self.readiness.next_wake())
        if self.watcher is not None:
            watch_wake = self.watcher.next_wake(now)
            if watch_wake is not None:
                wake = min(wake, watch_wake)
        return max(0.0, wake - now)

    def _observations(self) -> dict[int, Observation]:
        """What the scoreboard shows of the live processes the pool has to watch, read once per
        turn of the loop: the ones still starting (have they registered?) and the ones with a
        job timeout (the backstop needs their job's deadline). The others cost a turn nothing,
        so an idle supervisor's turn does not grow with its pool."""
        seen = {}
        glance = self.scoreboard.glance
        for slot in self.pool.children():
            if slot.state is ProcessState.STARTING or slot.spec.has_timeouts:
                seen[slot.index] = Observation(*glance(slot.index))
        return seen

    def _observe_all(self) -> dict[int, Observation]:
        """What the scoreboard shows of every live process (a shrink picks an idle one)."""
        glance = self.scoreboard.glance
        return {s.index: Observation(*glance(s.index)) for s in self.pool.children()}

    def _heal_broken(self) -> None:
        """A broken file fixed without a reload: its dedicated process, retried with backoff,
        now runs it. Take it off the broken list; the pool replaces the shared processes,
        which left it out, so they serve it too."""
        since = {n: self.catalog.broken_since.get(n, 0.0) for n in self.catalog.broken}
        for name in self.pool.heal(since):
            log.info("worker file for %s loads again", name)
            self.catalog.mark_fixed(name)

    # -- carrying out the pool's actions ---------------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        now = time.monotonic()
        spawns: list[_Prepared] = []
        for action in actions:
            if isinstance(action, Spawn):  # a run of spawns: forked back to back (_launch)
                spawns.append(self._prepare(action.slot))
                continue
            if spawns:
                self._launch(spawns, now)
                spawns = []
            if isinstance(action, Stop):
                self._signal(action.slot, signal.SIGTERM)
            elif isinstance(action, Kill):
                self._signal(action.slot, signal.SIGKILL)
            elif isinstance(action, Release):
                self.scoreboard.clear(action.index)
        if spawns:
            self._launch(spawns, now)

    def _prepare(self, slot: Slot) -> _Prepared:
        """All that the process of ``slot`` needs, built before any fork of its batch."""
        spec = slot.spec
        files = {n: self.catalog.files[n] for n in spec.functions if n in self.catalog.files}
        if len(spec.functions) > 1:  # a shared process leaves out files known to be broken
            files = {n: p for n, p in files.items() if n not in self.catalog.broken}
        self.scoreboard.starting(slot.index)
        wspec = worker_spec(
            spec,
            files,
            self.config.servers,
            slot.index,
            records=record_settings(self.config),
        )
        self.loaded[slot.index] = list(wspec.functions)
        scoreboard, parent, board = self.scoreboard, self.pid, self.poison.board

        def run() -> int:
            from gearmgr.worker.child import run_child

            return run_child(wspec, scoreboard, parent, board)

        return slot, run, f"worker {spec.key}"

    def _launch(self, spawns: list[_Prepared], now: float) -> None:
        """Fork the prepared processes back to back (spawner.fork_all: whatever the supervisor
        writes between two forks costs each worker memory), then record them."""
        pids = fork_all([(run, what) for _, run, what in spawns], in_child=self._in_child)
        for (slot, _, _), pid in zip(spawns, pids, strict=True):
            if isinstance(pid, OSError):
                slot.spawn_failed(now)
                log.error("fork failed for %s: %s; retrying", slot.key, pid)
                continue
            slot.spawned(pid, now)
            log.debug("started process %d (%s: %s)", pid, slot.key, ",".join(slot.spec.functions))

    def _in_validation_child(self) -> None:
        """The throwaway fork that imports worker files to validate them (runs in the child)."""
        from gearmgr.children import set_parent_death_signal

        self._in_child()
        set_parent_death_signal(signal.SIGKILL)

    def _in_child(self) -> None:
        """Drop what belongs to the supervisor (runs in the child, right after fork)."""
        from gearmgr.worker.child import reset_signals

        reset_signals()
        self._selector.close()
        for listener in (self.control, self.metrics):
            if listener is not None:
                listener.close_in_child()
        self.notifier.close()
        self.probe.close_in_child()
        self.backlog.close_in_child()
        if self.watcher is not None:
            self.watcher.close()
        if self.pid_file is not None:
            self.pid_file.close_in_child()
        scan = self.reloads.scan
        if scan is not None and scan.validation is not None:
            os.close(scan.validation.fd)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    # -- signals -------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS + STRAY_SIGNALS:
            signal.signal(sig, self._record_signal)

    def _record_signal(self, sig: int, frame: object) -> None:
        """The only thing a handler does: record the signal for the loop."""
        self._signals.append(sig)

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _dispatch(self, sig: int) -> None:
        name = signal.Signals(sig).name.lower()
        handler = getattr(self, f"handle_{name[3:]}", None)
        if handler is None:
            log.warning("%s ignored (stop with TERM, reload with HUP)", name.upper())
            return
        handler()

    def handle_chld(self) -> None:
        """Children are reaped after every wake-up; nothing more to do."""

    def handle_term(self) -> None:
        self.stop_requests += 1
        if self.stop_requests > 1:
            log.warning("second stop request: killing every process now")
            self._execute(self.pool.kill_all(time.monotonic()))
            self.stopping = True
            return
        self.begin_stop()

    handle_int = handle_term

    def handle_quit(self) -> None:
        log.warning("SIGQUIT: killing every process now")
        self.stopping = True
        self._execute(self.pool.kill_all(time.monotonic()))

    def handle_hup(self) -> None:
        if not self.stopping:
            self.reload()

    def handle_usr1(self) -> None:
        reopen_log_file(redirect=False)
        log.info("log file reopened")
        for slot in self.pool.children():
            self._signal(slot, signal.SIGUSR1)

    def begin_stop(self) -> None:
        """Graceful stop: every process finishes the job in hand (up to its
        graceful_timeout) and exits; then the supervisor exits."""
        if self.stopping:
            return
        n = len(self.pool.children())
        what = "finishes its job and exits" if n == 1 else "finish their jobs and exit"
        log.info("stopping: %s %s", plural(n, "process"), what)
        self.stopping = True
        self._cancel_scan()
        self.readiness.stopping()
        self._execute(self.pool.stop_all(time.monotonic()))
