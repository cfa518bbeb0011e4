"""The supervisor: one main loop that forks, reaps, recycles and stops worker processes.

In the style of gunicorn's arbiter: signal handlers only record the signal; the loop waits on
one selector (the wakeup pipe of ``signal.set_wakeup_fd``), handles each recorded signal by a
method named for it, reaps every exited child, enforces deadlines, and reconciles the slots with
the plan. The supervisor never imports worker code and never touches a job; workers fetch their
own jobs from gearmand and report through the shared-memory scoreboard.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from gearmgr import scoreboard as sb
from gearmgr.config import Config, ConfigError, load_config
from gearmgr.discovery import discover
from gearmgr.errors import ExitCode, FatalError
from gearmgr.logs import reopen_log_file, setup_logging
from gearmgr.ops.control import AnswerLater, ControlError, ControlServer
from gearmgr.ops.listener import Listener
from gearmgr.ops.metrics import MetricsServer, SupervisorCollector
from gearmgr.ops.pidfile import PidFile, PidFileError
from gearmgr.ops.privileges import (
    PrivilegeError,
    access_problems,
    drop,
    needed_access,
    prepare_files,
    resolve,
)
from gearmgr.ops.status import build_status, summary
from gearmgr.ops.systemd import Notifier
from gearmgr.supervisor.catalog import Catalog, Scan
from gearmgr.supervisor.embedded import EmbeddedServer, EmbeddedServerError, find_gearmand
from gearmgr.supervisor.lifecycle import ExitReason, Lifecycle, ProcessState, Slot
from gearmgr.supervisor.plan import MAX_PROCESSES, ProcessSpec, make_plan, worker_spec
from gearmgr.supervisor.probe import ServerProbe
from gearmgr.supervisor.snapshot import Snapshot, take_snapshot
from gearmgr.supervisor.spawner import HANDLED_SIGNALS, fork
from gearmgr.supervisor.watch import Watcher
from gearmgr.words import plural

log = logging.getLogger("gearmgr.supervisor")


TIMEOUT_GRACE = 5.0  # a job past its timeout by this much is killed by the supervisor
REPLACE_POLL = 0.01  # how often a rolling replacement checks that the new process registered
REPLACE_WAIT = 10.0  # longest wait for a replacement to register before draining the old one
TICK = 1.0
STATUS_INTERVAL = 5.0  # seconds between systemd STATUS= updates
SERVER_CHECK = 5.0  # seconds between checks of the job servers


def preload() -> None:
    """Import, before any fork, what every worker needs: the forks share these pages
    (copy-on-write) instead of each importing them again, and they load even after a privilege
    drop has made the Python installation unreadable."""
    import encodings.idna  # noqa: F401 - socket host names need it lazily
    import json  # noqa: F401

    import gearmgr.worker.child
    import gearmgr.worker.job  # noqa: F401

    try:
        import setproctitle  # noqa: F401
    except ImportError:
        pass


def describe_exit(status: int, killed_by_us: bool = False) -> str:
    """A wait status in words: 'exited with status 3', 'killed by SIGKILL'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        text = f"killed by {name}"
        if os.WCOREDUMP(status):
            text += " (core dumped)"
        if sig == signal.SIGKILL and not killed_by_us:
            text += " (perhaps out of memory?)"
        return text
    return f"exited with status {os.WEXITSTATUS(status)}"


class Supervisor:
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
        self.slots: list[Slot] = []
        self.draining: list[Slot] = []  # processes of slots no longer in the plan
        self.replacing: deque[tuple[Slot, ProcessSpec]] = deque()
        self.replacement: tuple[Slot, Slot, float] | None = None  # (old, new, started)
        self.catalog = Catalog()
        self.restarts: Counter[tuple[str, str]] = Counter()
        self.scoreboard = sb.Scoreboard()
        self._free = list(range(self.scoreboard.capacity - 1, -1, -1))
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
        self._spawn_at = 0.0  # start-up pacing by spawn_delay
        self.control: ControlServer | None = None
        self.totals: dict[str, sb.FunctionStats] = {}  # counters of exited processes
        self.loaded: dict[int, list[str]] = {}  # scoreboard index -> function counter order
        self.watcher: Watcher | None = None
        self.scanning: tuple[Scan, Callable[[set[str]], None]] | None = None
        self._rescan: str | None = None  # a reload or code change that came during a scan
        self.metrics: MetricsServer | None = None
        self.notifier = Notifier()
        self.ready = False
        self._next_status = 0.0
        self._next_watchdog = 0.0
        self.probe = ServerProbe(
            config.servers,
            self._server_checked,
            interval=SERVER_CHECK,
            in_child=self._in_validation_child,
        )
        self.servers_up: dict[str, bool] = {}
        self._reload_waiters: list[AnswerLater] = []  # `gearmgr reload` clients

    # -- running -------------------------------------------------------------------------------

    def run(self) -> int:
        """What ``gearmgr run`` does: returns the exit code."""
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
        self._kill_all(signal.SIGKILL)
        self._final_cleanup()
        return code

    def _start(self) -> None:
        if self.config.pid_file is not None:
            self.pid_file = PidFile(self.config.pid_file)
            try:
                self.pid_file.acquire(self.pid)
            except PidFileError as exc:
                raise FatalError(str(exc)) from exc
        try:
            self.control = ControlServer(self.config.control_socket, self._control)
        except ControlError as exc:
            raise FatalError(str(exc)) from exc
        except OSError as exc:
            raise FatalError(
                f"control_socket {self.config.control_socket}: {exc.strerror}"
            ) from exc
        # What can fail for want of a resource is tried before the switch of user, while the
        # control socket can still be removed on the way out (a privileged metrics port too).
        if self.config.metrics:
            try:
                self.metrics = MetricsServer(
                    self.config.metrics, SupervisorCollector(self.snapshot)
                )
            except OSError as exc:
                raise FatalError(str(exc)) from exc
            log.info("metrics on http://%s/metrics", self.config.metrics)
        if self.config.embedded_server:
            find_gearmand()  # EmbeddedServerError, a FatalError, when it is missing
        preload()
        self._drop_privileges()
        self._install_signals()
        from gearmgr.worker.child import set_title

        label = self.config.path or "defaults"
        set_title(f"gearmgr: supervisor ({label})")
        if self.config.embedded_server:
            self._start_embedded()
        try:
            self.catalog.scan(self.config, in_child=self._in_validation_child)
        except OSError as exc:
            raise FatalError(f"worker_dirs: cannot read {exc.filename}: {exc.strerror}") from exc
        for line in self.config.unused_function_settings(self.catalog.files):
            log.warning("%s", line)
        plan = make_plan(self.config, self.catalog.files)
        try:
            self._check_capacity(plan)
        except FatalError as exc:
            raise FatalError(str(exc), ExitCode.USAGE) from exc
        if not plan:
            log.warning("no worker functions to run: check worker_dirs, include and exclude")
        self.slots = [Slot(spec, self._take_index()) for spec in plan]
        log.info(
            "supervisor %d starting %s for %s on %s",
            self.pid,
            plural(len(self.slots), "process"),
            plural(len(self.catalog.files), "function"),
            ", ".join(self.config.servers),
        )

    def _loop(self) -> None:
        self._selector.register(self._wakeup_r, selectors.EVENT_READ)
        self.probe.attach(self._selector)
        for listener in (self.control, self.metrics):
            if listener is not None:
                listener.attach(self._selector)
        self._start_watcher(self.config)
        while True:
            now = time.monotonic()
            for key, _ in self._selector.select(self._wait_time(now)):
                if isinstance(key.data, (Listener, ServerProbe)):
                    key.data.ready(key.fileobj)
                elif key.data == "watch" and self.watcher is not None:
                    self.watcher.read(time.monotonic())
                elif key.data == "validation" and self.scanning is not None:
                    job = self.scanning[0].validation
                    if job is not None and job.read():
                        self._finish_scan()
            self._drain_wakeup()
            while self._signals:
                self._dispatch(self._signals.popleft())
            self._reap()
            self._observe()
            now = time.monotonic()
            self._notify_systemd(now)
            self.probe.tick(now)
            for listener in (self.control, self.metrics):
                if listener is not None:
                    listener.sweep(now)
            if self.stopping:
                self._enforce_stop_deadlines(now)
                if not self.children():
                    return
                continue
            if self.scanning is not None:
                job = self.scanning[0].validation
                if job is not None and now >= job.deadline:
                    self._finish_scan()
            if self.watcher is not None and self.watcher.due(now):
                self.code_changed()
            self._enforce_stop_deadlines(now)
            self._enforce_job_timeouts(now)
            self._heal_broken()
            self._advance_replacement(now)
            self._restart_embedded(now)
            self._spawn_due(now)

    def _wait_time(self, now: float) -> float:
        wake = now + TICK
        if self.stopping:  # nothing starts any more: wait for exits and kill deadlines
            for slot in self._stopping_slots():
                wake = min(wake, slot.kill_at)
            return max(0.0, wake - now)
        for slot in self.slots:
            if not slot.state.alive:
                wake = min(wake, max(slot.next_start, self._spawn_at))
        for slot in self._stopping_slots():
            wake = min(wake, slot.kill_at)
        if self.embedded is not None and not self.embedded_life.state.alive:
            wake = min(wake, self.embedded_life.next_start)
        if self.scanning is not None and self.scanning[0].validation is not None:
            wake = min(wake, self.scanning[0].validation.deadline)
        if self.replacement is not None or self.replacing:
            wake = min(wake, now + REPLACE_POLL)  # a rolling replacement waits on a registration
        wake = min(wake, self.probe.next_wake())
        if self.notifier.enabled:
            wake = min(wake, self._next_status)
            if self.notifier.watchdog_interval:
                wake = min(wake, self._next_watchdog)
        if self.watcher is not None:
            watch_wake = self.watcher.next_wake(now)
            if watch_wake is not None:
                wake = min(wake, watch_wake)
        return max(0.0, wake - now)

    # -- signals -------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for sig in HANDLED_SIGNALS:
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
        getattr(self, f"handle_{name[3:]}")()

    def handle_chld(self) -> None:
        """Children are reaped after every wake-up; nothing more to do."""

    def handle_term(self) -> None:
        self.stop_requests += 1
        if self.stop_requests > 1:
            log.warning("second stop request: killing every process now")
            self._kill_all(signal.SIGKILL)
            self.stopping = True
            return
        self.begin_stop()

    handle_int = handle_term

    def handle_quit(self) -> None:
        log.warning("SIGQUIT: killing every process now")
        self.stopping = True
        self._kill_all(signal.SIGKILL)

    def handle_hup(self) -> None:
        if not self.stopping:
            self.reload()

    def handle_usr1(self) -> None:
        reopen_log_file(redirect=False)
        log.info("log file reopened")
        for slot in self._all_slots():
            if slot.pid:
                self._signal(slot, signal.SIGUSR1)

    # -- stopping ------------------------------------------------------------------------------

    def begin_stop(self) -> None:
        """Graceful stop: every process finishes the job in hand (up to its
        graceful_timeout) and exits; then the supervisor exits."""
        if self.stopping:
            return
        n = len(self.children())
        what = "finishes its job and exits" if n == 1 else "finish their jobs and exit"
        log.info("stopping: %s %s", plural(n, "process"), what)
        self.stopping = True
        self._cancel_scan()
        self.notifier.stopping()
        now = time.monotonic()
        for slot in self._all_slots():
            if slot.pid:
                self._stop_slot(slot, now, ExitReason.STOP)

    def _stop_slot(self, slot: Slot, now: float, reason: ExitReason) -> None:
        slot.stop(now, slot.spec.limits.graceful_timeout, reason)
        self._signal(slot, signal.SIGTERM)

    def _enforce_stop_deadlines(self, now: float) -> None:
        for slot in self._stopping_slots():
            if slot.pid and now >= slot.kill_at:
                log.warning(
                    "process %d (%s) did not stop within %gs: SIGKILL",
                    slot.pid,
                    slot.key,
                    slot.spec.limits.graceful_timeout,
                )
                self._signal(slot, signal.SIGKILL)
                slot.killed(now)

    def _kill_all(self, sig: int) -> None:
        """Stop every process at once (QUIT, a second TERM, a fatal error): they are logged as
        stopped, not as crashes."""
        now = time.monotonic()
        for slot in self._all_slots():
            if slot.pid:
                slot.stop(now, 3600, ExitReason.STOP)
                self._signal(slot, sig)

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
            job = self.scanning[0].validation if self.scanning is not None else None
            if job is not None and pid == job.pid:
                job.status = status  # the validation fork: its pipe tells the rest
                continue
            slot = self._slot_by_pid(pid)
            if slot is None:
                log.debug("reaped unknown child %d (%s)", pid, describe_exit(status))
                continue
            self._end_group(pid)
            self._child_exited(slot, status)

    def _child_exited(self, slot: Slot, status: int) -> None:
        now = time.monotonic()
        view = self.scoreboard.read(slot.index)
        busy = view.state == "busy" or view.job_deadline > 0
        busy = busy or slot.stop_reason is ExitReason.TIMEOUT
        pid = slot.pid
        self._add_totals(slot.index)
        exit = slot.exited(
            now,
            exit_ok=os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
            reported=ExitReason.from_label(view.exit_reason),
            busy=busy,
            jobs=(view.jobs_done, view.jobs_failed),
        )
        how = describe_exit(status, killed_by_us=exit.asked)
        if slot in self.draining:
            self.draining.remove(slot)
            self._release_index(slot.index)
            log.info(
                "process %d (%s) %s after draining (%s)", pid, slot.key, how, exit.reason.label
            )
            return
        if exit.restart is None:
            log.info("process %d (%s) %s", pid, slot.key, how)
            return
        self.restarts[(slot.spec.group, exit.restart.label)] += 1
        level = logging.INFO if exit.restart is not ExitReason.CRASH else logging.WARNING
        after = f"; restarting in {exit.delay:.1f}s" if exit.delay else "; restarting"
        if exit.reason is ExitReason.IMPORT:
            detail = "none of its worker files could be loaded"
        elif exit.reason is ExitReason.JOB_EXIT:  # counted as a crash, backoff included
            word = self.scoreboard.words[self.scoreboard.base(slot.index) + sb.JOB_EXIT]
            detail = sb.describe_job_exit(word)
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

    # -- spawning ------------------------------------------------------------------------------

    def _observe(self) -> None:
        """Read from the scoreboard whether the starting processes have loaded their code and
        registered: once per process, here only."""
        for slot in self.slots:
            if slot.state is ProcessState.STARTING:
                view = self.scoreboard.read(slot.index)
                slot.observe(view.state, view.servers_connected)

    def _spawn_due(self, now: float) -> None:
        for slot in self.slots:
            if not slot.due(now):
                continue
            if now < self._spawn_at:
                return
            self._spawn(slot, now)
            if self.config.spawn_delay and not self._all_started_once:
                self._spawn_at = now + self.config.spawn_delay
                return
        self._all_started_once = True

    _all_started_once = False

    def _spawn(self, slot: Slot, now: float) -> None:
        spec = slot.spec
        files = {n: self.catalog.files[n] for n in spec.functions if n in self.catalog.files}
        if len(spec.functions) > 1:  # a shared process leaves out files known to be broken
            files = {n: p for n, p in files.items() if n not in self.catalog.broken}
        self.scoreboard.clear(slot.index)
        self.scoreboard.words[self.scoreboard.base(slot.index) + sb.STATE] = sb.STARTING
        wspec = worker_spec(spec, files, self.config.servers, slot.index)
        self.loaded[slot.index] = list(wspec.functions)

        def run() -> int:
            from gearmgr.worker.child import run_child

            return run_child(wspec, self.scoreboard, self.pid)

        try:
            pid = fork(run, what=f"worker {spec.key}", in_child=self._in_child)
        except OSError as exc:
            slot.spawn_failed(now)
            log.error("fork failed for %s: %s; retrying", slot.key, exc)
            return
        slot.spawned(pid, now)
        log.debug("started process %d (%s: %s)", pid, slot.key, ",".join(spec.functions))

    def _in_validation_child(self) -> None:
        """The throwaway fork that imports worker files to validate them (runs in the child)."""
        from gearmgr.worker.child import set_parent_death_signal

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
        if self.watcher is not None:
            self.watcher.close()
        if self.pid_file is not None:
            self.pid_file.close_in_child()
        if self.scanning is not None and self.scanning[0].validation is not None:
            os.close(self.scanning[0].validation.fd)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    # -- timeouts ------------------------------------------------------------------------------

    def _enforce_job_timeouts(self, now: float) -> None:
        """Backstop for the worker's own timeout watchdog (which cannot run while a job holds
        the GIL): kill a process whose job is past its deadline by TIMEOUT_GRACE."""
        for slot in self._all_slots():
            if not slot.pid or slot.stop_reason is ExitReason.TIMEOUT:
                continue
            deadline = self.scoreboard.floats[self.scoreboard.base(slot.index) + sb.JOB_DEADLINE]
            if deadline and now > deadline + TIMEOUT_GRACE:
                log.error(
                    "process %d (%s): job past its timeout and the worker did not fail it; "
                    "SIGKILL (gearmand re-queues the job)",
                    slot.pid,
                    slot.key,
                )
                slot.stop(now, 0, ExitReason.TIMEOUT, force=True)
                self._signal(slot, signal.SIGKILL)

    # -- reload --------------------------------------------------------------------------------

    def reload(self) -> None:
        """HUP: reload the config, rescan the worker folders, and reconcile: start what the new
        plan adds, drain what it drops, replace one by one what changed (limits, function set
        or code). Whatever goes wrong is logged and the running processes are kept."""
        if self.scanning is not None:  # a check of worker files is under way: reload after it
            self._rescan = "reload"
            return
        try:
            self._reload()
        except (FatalError, OSError, ValueError) as exc:
            log.error("reload failed, keeping what runs: %s", exc)
            self._reload_done({"ok": False, "applied": False, "error": f"reload failed: {exc}"})

    def _reload_done(self, outcome: dict[str, object]) -> None:
        """Tell the `gearmgr reload` clients waiting what came of it."""
        waiters, self._reload_waiters = self._reload_waiters, []
        for answer in waiters:
            answer(outcome)

    def _reload(self) -> None:
        path = self.config.path
        try:
            config = self._with_overrides(load_config(path)) if path else self.config
        except ConfigError as exc:
            log.error("reload: the config does not load, keeping the running one: %s", exc)
            self._reload_done(
                {"ok": False, "applied": False, "config_error": True, "error": str(exc)}
            )
            return
        plan = make_plan(config, discover(config.worker_dirs, config.include, config.exclude).files)
        self._check_capacity(plan)
        logging_changed = (config.log_level, config.log_file) != (
            self.config.log_level,
            self.config.log_file,
        )
        if logging_changed:
            setup_logging(config.log_level, config.log_file)
        if (
            config.worker_dirs != self.config.worker_dirs
            or config.auto_reload != self.config.auto_reload
        ):
            self._start_watcher(config)
        servers_changed = config.servers != self.config.servers
        self.config = config
        if servers_changed:
            self.probe.configure(config.servers)
            self.servers_up = {a: u for a, u in self.servers_up.items() if a in config.servers}

        def then(changed: set[str]) -> None:
            if servers_changed or logging_changed:  # every process holds these: replace them all
                log.info("servers or logging changed: replacing every process one by one")
                changed |= set(self.catalog.files)
            try:
                self._apply_plan(changed)
            except (FatalError, OSError, ValueError) as exc:
                self._reload_done({"ok": False, "applied": False, "error": str(exc)})
                raise
            self._reload_done(
                {"ok": True, "applied": True, "broken": dict(sorted(self.catalog.broken.items()))}
            )

        self._begin_scan(validate_all=True, then=then)

    def code_changed(self) -> None:
        """auto_reload: worker files changed, were added or removed."""
        if self.scanning is not None:
            self._rescan = self._rescan or "code"
            return

        def then(changed: set[str]) -> None:
            self._check_capacity(make_plan(self.config, self.catalog.files))
            self._apply_plan(changed)

        try:
            self._begin_scan(validate_all=False, then=then)
        except (FatalError, OSError, ValueError) as exc:
            log.error("code reload failed, keeping what runs: %s", exc)

    # -- validation in the background -----------------------------------------------------------

    def _begin_scan(self, validate_all: bool, then: Callable[[set[str]], None]) -> None:
        """Rescan the worker folders; validate in a throwaway fork that the loop waits on
        through the selector, so reaping and signals go on meanwhile; then ``then(changed)``."""
        assert self.scanning is None, "one check of worker files at a time"
        pending = self.catalog.start_scan(
            self.config, validate_all, in_child=self._in_validation_child
        )
        if pending.validation is None:
            then(self.catalog.finish_scan(pending, {}))
            return
        self.scanning = (pending, then)
        self._selector.register(pending.validation.fd, selectors.EVENT_READ, "validation")

    def _finish_scan(self) -> None:
        assert self.scanning is not None
        pending, then = self.scanning
        self.scanning = None
        job = pending.validation
        assert job is not None
        try:
            self._selector.unregister(job.fd)
        except (KeyError, ValueError):
            pass
        try:
            then(self.catalog.finish_scan(pending, job.results()))
        except (FatalError, OSError, ValueError) as exc:
            log.error("reload failed, keeping what runs: %s", exc)
        rescan, self._rescan = self._rescan, None
        if rescan == "reload":
            self.reload()
        elif rescan == "code":
            self.code_changed()

    def _cancel_scan(self) -> None:
        self._reload_done({"ok": False, "applied": False, "error": "the supervisor is stopping"})
        if self.scanning is not None:
            job = self.scanning[0].validation
            self.scanning = None
            if job is not None:
                try:
                    self._selector.unregister(job.fd)
                except (KeyError, ValueError):
                    pass
                job.cancel()

    def _apply_plan(self, changed_code: set[str]) -> None:
        plan = make_plan(self.config, self.catalog.files)
        by_key = {slot.key: slot for slot in self.slots}
        slots: list[Slot] = []
        replaced = 0
        for spec in plan:
            slot = by_key.pop(spec.key, None)
            if slot is None:
                slots.append(Slot(spec, self._take_index()))
                continue
            slots.append(slot)
            if slot.spec != spec or set(spec.functions) & changed_code:
                self._queue_replacement(slot, spec)
                replaced += 1
        now = time.monotonic()
        for slot in by_key.values():
            self._retire(slot, now)
        added = len(slots) - (len(self.slots) - len(by_key))
        self.slots = slots
        log.info(
            "reconciled: %s planned; %d added, %d to replace one by one, %d retired",
            plural(len(plan), "process"),
            added,
            replaced,
            len(by_key),
        )

    def _queue_replacement(self, slot: Slot, spec: ProcessSpec) -> None:
        if slot.pid and set(spec.functions) <= set(self.catalog.broken):
            return  # a new process could not load it: the running one keeps serving
        self.replacing = deque((s, p) for s, p in self.replacing if s is not slot)
        self.replacing.append((slot, spec))

    def _heal_broken(self) -> None:
        """A broken file fixed without a reload: its dedicated process, retried with backoff,
        now runs it. Take it off the broken list and replace the shared processes, which left
        it out, so they serve it too."""
        for name in list(self.catalog.broken):
            for slot in self.slots:
                if slot.spec.functions != (name,) or not slot.code_loaded:
                    continue
                if slot.state is ProcessState.STOPPING:
                    continue
                if slot.started_at <= self.catalog.broken_since.get(name, 0.0):
                    continue  # it runs code imported before the file broke
                log.info("worker file for %s loads again", name)
                self.catalog.mark_fixed(name)
                for shared in self.slots:
                    if len(shared.spec.functions) > 1 and name in shared.spec.functions:
                        self._queue_replacement(shared, shared.spec)
                break

    def replace_functions(self, names: set[str]) -> int:
        """Replace, one by one, the processes that serve any of ``names`` (code changed)."""
        count = 0
        for slot in self.slots:
            if set(slot.spec.functions) & names:
                self._queue_replacement(slot, slot.spec)
                count += 1
        return count

    def _retire(self, slot: Slot, now: float) -> None:
        if slot.pid:
            self.draining.append(slot)
            self._stop_slot(slot, now, ExitReason.RETIRE)
        else:
            self._release_index(slot.index)

    def _advance_replacement(self, now: float) -> None:
        """Rolling replacement: start the new process, wait until it has registered, then
        drain the old one; one slot at a time, so the pool never empties."""
        if self.replacement is not None:
            old, new, since = self.replacement
            ready = new.state is ProcessState.REGISTERED
            if not new.state.alive:
                # The new process died before it registered (e.g. its file broke): keep the old
                # one serving rather than leave the function with nothing.
                self.replacement = None
                if old.pid:
                    log.warning(
                        "the replacement for %s died before registering; process %d stays",
                        old.key,
                        old.pid,
                    )
                    self.slots[self.slots.index(new)] = old
                    self._release_index(new.index)
                else:  # the old one is gone too: the new slot retries with its backoff
                    self._release_index(old.index)
                return
            if not (ready or now - since > REPLACE_WAIT):
                return
            self.replacement = None
            if old.pid:
                self.draining.append(old)
                self._stop_slot(old, now, ExitReason.RELOAD)
            else:
                self._release_index(old.index)
            self.restarts[(old.spec.group, "reload")] += 1
        while self.replacing and self.replacement is None:
            old, spec = self.replacing.popleft()
            if old not in self.slots:
                continue
            if not old.pid:
                old.spec = spec
                continue
            new = Slot(spec, self._take_index())
            self.slots[self.slots.index(old)] = new
            self._spawn(new, now)
            self.replacement = (old, new, now)

    # -- functions -----------------------------------------------------------------------------

    # -- auto_reload ---------------------------------------------------------------------------

    def _start_watcher(self, config: Config) -> None:
        if self.watcher is not None:
            fd = self.watcher.fileno()
            if fd is not None:
                try:
                    self._selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
            self.watcher.close()
            self.watcher = None
        if not config.auto_reload:
            return
        self.watcher = Watcher(config.worker_dirs)
        fd = self.watcher.fileno()
        if fd is not None:
            self._selector.register(fd, selectors.EVENT_READ, "watch")
        log.info(
            "auto_reload: watching %s (%s)",
            ", ".join(map(str, config.worker_dirs)),
            self.watcher.mode,
        )

    # -- embedded gearmand ---------------------------------------------------------------------

    def _start_embedded(self) -> None:
        state_dir = self.config.path.parent if self.config.path else Path.cwd()
        self.embedded = EmbeddedServer(self.config.servers[0], state_dir)
        try:
            self.embedded_life.spawned(self.embedded.start(), time.monotonic())
            self.embedded.wait_ready()
        except EmbeddedServerError as exc:
            raise FatalError(str(exc)) from exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise FatalError(
                f"embedded_server: cannot start gearmand:{where}: {exc.strerror}"
            ) from exc

    def _embedded_died(self, status: int) -> None:
        assert self.embedded is not None
        self.embedded.pid = 0
        delay = self.embedded_life.died(time.monotonic())
        if self.stopping:
            return
        log.error(
            "embedded gearmand %s; restarting it%s",
            describe_exit(status),
            f" in {delay:.1f}s" if delay else "",
        )

    def _restart_embedded(self, now: float) -> None:
        server = self.embedded
        if server is None or self.stopping or not self.embedded_life.due(now):
            return
        try:
            self.embedded_life.spawned(server.start(), now)
        except (EmbeddedServerError, OSError) as exc:
            raise FatalError(f"embedded gearmand cannot be restarted: {exc}") from exc

    def _final_cleanup(self) -> None:
        self._cancel_scan()
        self.probe.close()
        self._reap()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.embedded:
            self.embedded.stop()
        if self.pid_file is not None:
            self.pid_file.release()

    # -- job servers ---------------------------------------------------------------------------

    def _server_checked(self, address: str, up: bool) -> None:
        """The probe's answer for one job server (asked every SERVER_CHECK seconds, in the
        selector): log the ones that went down or came back (each worker reconnects on its
        own)."""
        if address not in self.config.servers:
            return
        was = self.servers_up.get(address)
        self.servers_up[address] = up
        if (was is None and not up) or (was and not up):
            log.warning("job server %s is down; workers keep retrying", address)
        elif was is False and up:
            log.info("job server %s is back", address)

    # -- systemd -------------------------------------------------------------------------------

    def _notify_systemd(self, now: float) -> None:
        """READY=1 once every planned process has registered (or is backing off after a
        failure), STATUS= every few seconds, WATCHDOG=1 at half systemd's interval."""
        if not self.notifier.enabled:
            return
        if not self.ready and not self.stopping and self._all_registered():
            self.ready = True
            self.notifier.ready(summary(self.snapshot()))
            self._next_status = now + STATUS_INTERVAL
        if now >= self._next_status:
            self.notifier.status(summary(self.snapshot()))
            self._next_status = now + STATUS_INTERVAL
        if self.notifier.watchdog_interval and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + self.notifier.watchdog_interval

    def _all_registered(self) -> bool:
        """Every planned process has loaded its code and registered with a job server (with
        at least one: a server that is down must not keep systemd waiting, its outage is in
        the logs and the status), or is backing off after a failure."""
        if any(address not in self.servers_up for address in self.config.servers):
            return False  # the first check of the job servers is still under way (<= 1 s)
        wanted = 1 if any(self.servers_up.values()) else 0
        broken = set(self.catalog.broken)
        for slot in self.slots:
            if set(slot.spec.functions) <= broken:
                continue  # its file fails to load: logged, retried, not worth holding up READY
            if slot.state is ProcessState.REGISTERED or (slot.code_loaded and not wanted):
                continue
            if slot.state.alive:
                return False
            if slot.failures == 0:
                return False
        return True

    # -- privileges ----------------------------------------------------------------------------

    def _drop_privileges(self) -> None:
        try:
            target = resolve(self.config.user, self.config.group)
            if target is None:
                if os.geteuid() == 0 and not self.allow_root:
                    raise FatalError(
                        "refusing to run workers as root: set user (and group) in the config, "
                        "or pass --allow-root (or GEARMGR_ALLOW_ROOT=1) if you mean it",
                        ExitCode.USAGE,
                    )
                return
            uid, gid, name = target
            problems = access_problems(uid, gid, name, needed_access(self.config))
            if problems:  # found before the switch, while gearmgr can still clean up after it
                raise FatalError(f"user {name} {'; '.join(problems)}: give it access")
            prepare_files(self.config, uid, gid)
            if self.control is not None:
                os.chown(self.control.path, uid, gid)
            drop(uid, gid, name)
        except (PrivilegeError, OSError) as exc:
            raise FatalError(str(exc)) from exc
        log.info("running as user %s (uid %d, gid %d)", name, uid, gid)

    # -- control and status ----------------------------------------------------------------------

    def _control(self, request: dict[str, str], later: AnswerLater) -> dict[str, object] | None:
        """Serve one control request (already validated by the control socket); None when
        ``later`` answers it (a reload answers once its outcome is known)."""
        command = request["command"]
        if command == "status":
            return {"ok": True, **build_status(self.snapshot())}
        if command == "reload":
            if self.stopping:
                return {"ok": False, "error": "the supervisor is stopping"}
            self._reload_waiters.append(later)
            self.reload()
            return None
        if command == "stop":
            self.begin_stop()
            return {"ok": True, "pid": self.pid}
        if command == "restart":
            name = request["function"]
            count = self.replace_functions({name})
            if not count:
                served = ", ".join(sorted(self.catalog.files)) or "none"
                error = f"no process serves function {name!r}; served: {served}"
                return {"ok": False, "error": error}
            log.info(
                "restart requested: replacing %s of %s one by one", plural(count, "process"), name
            )
            return {"ok": True, "processes": count}
        return {"ok": False, "error": f"unknown command {command!r}"}

    def snapshot(self) -> Snapshot:
        """What status, metrics and systemd's STATUS= show, read now."""
        return take_snapshot(
            pid=self.pid,
            started_at=self.started_at,
            config_path=str(self.config.path) if self.config.path else None,
            servers=self.config.servers,
            servers_up=self.servers_up,
            planned=self.slots,
            live=self.children(),
            loaded=self.loaded,
            totals=self.totals,
            scoreboard=self.scoreboard,
            served=self.catalog.files,
            broken=self.catalog.broken,
            restarts=self.restarts,
            stopping=self.stopping,
        )

    def _add_totals(self, index: int) -> None:
        """Keep the job counters of a process that is gone (its scoreboard slot is reused)."""
        order = self.loaded.pop(index, [])
        stats = self.scoreboard.read(index, len(order)).function_stats
        for name, st in zip(order, stats, strict=False):
            self.totals[name] = self.totals.get(name, sb.FunctionStats()) + st

    # -- bookkeeping ---------------------------------------------------------------------------

    def _check_capacity(self, plan: list[ProcessSpec]) -> None:
        """Refuse a plan the scoreboard cannot hold, with room for the processes that drain
        while their replacements start."""
        if len(plan) > MAX_PROCESSES:
            raise FatalError(
                f"the config plans {len(plan)} processes; gearmgr runs at most {MAX_PROCESSES}"
            )
        busy = len(self.draining) + (1 if self.replacement else 0)
        if len(plan) + busy > self.scoreboard.capacity:
            raise FatalError(
                f"the new plan needs {len(plan)} process slots and {busy} are still draining; "
                "try again once they have stopped"
            )

    def _take_index(self) -> int:
        if not self._free:
            raise FatalError(f"more than {self.scoreboard.capacity} processes planned")
        return self._free.pop()

    def _release_index(self, index: int) -> None:
        self.scoreboard.clear(index)
        self._free.append(index)

    def _all_slots(self) -> list[Slot]:
        extra = (
            [self.replacement[0]]
            if self.replacement and self.replacement[0] not in self.draining
            else []
        )
        return self.slots + self.draining + extra

    def _stopping_slots(self) -> list[Slot]:
        return [s for s in self._all_slots() if s.state is ProcessState.STOPPING]

    def children(self) -> list[Slot]:
        return [s for s in self._all_slots() if s.pid]

    def _slot_by_pid(self, pid: int) -> Slot | None:
        for slot in self._all_slots():
            if slot.pid == pid:
                return slot
        return None
