"""The supervisor's services around its loop: start-up (pid file, control socket, metrics,
privileges, the first scan and plan), the embedded gearmand, the job servers' check, systemd
readiness, the control commands, the snapshot that status and metrics read, and clean-up.
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import time
from collections.abc import Callable
from pathlib import Path

from gearmgr import scoreboard as sb
from gearmgr.children import become_subreaper
from gearmgr.config import Config
from gearmgr.errors import ExitCode, FatalError
from gearmgr.ops.control import AnswerLater, ControlError, ControlServer
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
from gearmgr.ops.systemd import Notifier, Readiness
from gearmgr.ops.top import TopFeed
from gearmgr.supervisor.backlog import BacklogReader
from gearmgr.supervisor.catalog import Catalog, Scan
from gearmgr.supervisor.embedded import EmbeddedServer, EmbeddedServerError, find_gearmand
from gearmgr.supervisor.lifecycle import Lifecycle, ProcessState
from gearmgr.supervisor.plan import make_plan
from gearmgr.supervisor.poison import PoisonWatch
from gearmgr.supervisor.pool import Pool
from gearmgr.supervisor.probe import ServerProbe
from gearmgr.supervisor.reload import ReloadSequence
from gearmgr.supervisor.snapshot import PoolView, Snapshot, take_snapshot
from gearmgr.supervisor.spawner import describe_exit
from gearmgr.words import plural

log = logging.getLogger("gearmgr.supervisor")


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


class Services:
    """Start-up, services and clean-up of the Supervisor (a mixin: arbiter.py holds the loop)."""

    config: Config
    allow_root: bool
    pid: int
    started_at: float
    pid_file: PidFile | None
    control: ControlServer | None
    metrics: MetricsServer | None
    embedded: EmbeddedServer | None
    embedded_life: Lifecycle
    notifier: Notifier
    probe: ServerProbe
    backlog: BacklogReader
    servers_up: dict[str, bool]
    catalog: Catalog
    pool: Pool
    scoreboard: sb.Scoreboard
    reloads: ReloadSequence[Scan]
    stopping: bool
    ready: bool
    totals: dict[str, sb.FunctionStats]
    loaded: dict[int, list[str]]
    readiness: Readiness
    poison: PoisonWatch
    top_feed: TopFeed
    _selector: selectors.BaseSelector

    _install_signals: Callable[[], None]
    _steer: Callable[[dict[str, str]], dict[str, object]]
    _pool_views: Callable[[float], dict[str, PoolView]]
    _in_validation_child: Callable[[], None]
    _cancel_scan: Callable[[], None]
    _reap: Callable[[], None]
    reload: Callable[[], None]
    begin_stop: Callable[[], None]

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
        become_subreaper()  # what a job leaves behind (setsid, double fork) comes back to us
        self._drop_privileges()
        self.poison.open_record(self.config)  # as the user the workers run as
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
            self.pool.check_capacity(plan)
        except FatalError as exc:
            raise FatalError(str(exc), ExitCode.USAGE) from exc
        if not plan:
            log.warning("no worker functions to run: check worker_dirs, include and exclude")
        self.pool.start(plan)
        log.info(
            "supervisor %d starting %s for %s on %s",
            self.pid,
            plural(len(self.pool.slots), "process"),
            plural(len(self.catalog.files), "function"),
            ", ".join(self.config.servers),
        )

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
        self.backlog.close()
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

    def _notify_systemd(self, now: float) -> None:
        """READY=1 once every planned process has registered (or is backing off after a
        failure), STATUS= every few seconds, WATCHDOG=1 at half systemd's interval: the
        readiness state machine (ops/systemd.py) decides, given ``now``."""
        self.readiness.tick(now, self._all_registered, lambda: summary(self.snapshot()))

    def _all_registered(self) -> bool:
        """Every planned process has loaded its code and registered with a job server (with
        at least one: a server that is down must not keep systemd waiting, its outage is in
        the logs and the status), or is backing off after a failure."""
        if any(address not in self.servers_up for address in self.config.servers):
            return False  # the first check of the job servers is still under way (<= 1 s)
        wanted = 1 if any(self.servers_up.values()) else 0
        broken = set(self.catalog.broken)
        for slot in self.pool.slots:
            if set(slot.spec.functions) <= broken:
                continue  # its file fails to load: logged, retried, not worth holding up READY
            if slot.state is ProcessState.REGISTERED or (slot.code_loaded and not wanted):
                continue
            if slot.state.alive:
                return False
            if slot.failures == 0:
                return False
        return True

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

    def _control(self, request: dict[str, str], later: AnswerLater) -> dict[str, object] | None:
        """Serve one control request (already validated by the control socket); None when
        ``later`` answers it (a reload answers once its outcome is known)."""
        command = request["command"]
        if command == "status":
            return {"ok": True, **build_status(self.snapshot())}
        if command == "reload":
            if self.stopping:
                return {"ok": False, "error": "the supervisor is stopping"}
            self.reloads.wait(later)
            self.reload()
            return None
        if command == "stop":
            self.begin_stop()
            return {"ok": True, "pid": self.pid}
        if command == "restart":
            name = request["function"]
            if name in self.catalog.broken:  # a new process could not load it: nothing to gain
                error = f"the worker file of {name} fails to load, fix it first: "
                return {"ok": False, "error": error + self.catalog.broken[name]}
            count = self.pool.replace_functions({name}, self.catalog.broken)
            if not count:
                served = ", ".join(sorted(self.catalog.files)) or "none"
                error = f"no process serves function {name!r}; served: {served}"
                return {"ok": False, "error": error}
            log.info(
                "restart requested: replacing %s of %s one by one", plural(count, "process"), name
            )
            return {"ok": True, "processes": count}
        if command in ("scale", "pause", "resume"):
            return self._steer(request)
        if command == "top":
            try:
                interval = float(request["interval"])
            except ValueError:
                interval = math.nan
            if not interval > 0:  # NaN too
                return {"ok": False, "error": "top: interval must be a number of seconds > 0"}
            return self.top_feed.answer(self.snapshot(), interval)
        return {"ok": False, "error": f"unknown command {command!r}"}

    def snapshot(self) -> Snapshot:
        """What status, metrics and systemd's STATUS= show, read now."""
        return take_snapshot(
            pid=self.pid,
            started_at=self.started_at,
            config_path=str(self.config.path) if self.config.path else None,
            servers=self.config.servers,
            servers_up=self.servers_up,
            planned=self.pool.slots,
            live=self.pool.children(),
            loaded=self.loaded,
            totals=self.totals,
            scoreboard=self.scoreboard,
            served=self.catalog.files,
            broken=self.catalog.broken,
            restarts=self.pool.restarts,
            stopping=self.stopping,
            pools=self._pool_views(time.monotonic()),
            failures=self.poison.stats(
                (slot.index for slot in self.pool.children()),
                str(self.config.failed_jobs) if self.config.failed_jobs else None,
            ),
        )
