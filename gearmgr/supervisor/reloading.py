"""The supervisor's reloads: HUP or ``gearmgr reload`` (config and code), auto_reload (code).

Each rescans the worker folders and validates the files in a throwaway fork that the loop waits
on through its selector (reaping and signals go on meanwhile), then reconciles the pool with the
new plan. The order of scans is the ReloadSequence's (reload.py); what changes in the pool is the
Pool's (pool.py). Whatever goes wrong is logged and the running processes are kept.
"""

from __future__ import annotations

import logging
import selectors
import time
from collections.abc import Callable

from gearmgr.config import Config, ConfigError, load_config
from gearmgr.discovery import discover
from gearmgr.errors import FatalError, one_line
from gearmgr.logs import setup_logging
from gearmgr.supervisor.backlog import BacklogReader
from gearmgr.supervisor.catalog import Catalog, Scan
from gearmgr.supervisor.plan import ProcessSpec, make_plan
from gearmgr.supervisor.pool import Action, Pool
from gearmgr.supervisor.probe import ServerProbe
from gearmgr.supervisor.reload import Kind, ReloadSequence
from gearmgr.supervisor.watch import Watcher

log = logging.getLogger("gearmgr.supervisor")


class Reloading:
    """The reload half of the Supervisor (a mixin: arbiter.py holds the loop)."""

    config: Config
    catalog: Catalog
    pool: Pool
    probe: ServerProbe
    backlog: BacklogReader
    servers_up: dict[str, bool]
    watcher: Watcher | None
    reloads: ReloadSequence[Scan]
    _selector: selectors.BaseSelector

    def _with_overrides(self, config: Config) -> Config:
        raise NotImplementedError

    _in_validation_child: Callable[[], None]
    _execute: Callable[[list[Action]], None]
    _current_plan: Callable[[], list[ProcessSpec]]
    _forget_steering: Callable[[], None]

    def reload(self) -> None:
        """HUP: reload the config, rescan the worker folders, and reconcile: start what the new
        plan adds, drain what it drops, replace one by one what changed (limits, function set
        or code). Whatever goes wrong is logged and the running processes are kept."""
        if not self.reloads.request(Kind.RELOAD):
            return  # a check of worker files is under way: reload after it
        try:
            self._reload()
        except Exception as exc:
            log.error("reload failed, keeping what runs: %s", describe(exc))
            self.reloads.done(
                {"ok": False, "applied": False, "error": f"reload failed: {describe(exc)}"}
            )

    def _reload(self) -> None:
        path = self.config.path
        try:
            config = (
                self._with_overrides(load_config(path, regular_only=True)) if path else self.config
            )
        except ConfigError as exc:
            log.error("reload: the config does not load, keeping the running one: %s", exc)
            self.reloads.done(
                {"ok": False, "applied": False, "config_error": True, "error": str(exc)}
            )
            return
        plan = make_plan(config, discover(config.worker_dirs, config.include, config.exclude).files)
        self.pool.check_capacity(plan)
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
        self._forget_steering()
        self.pool.spawn_delay = config.spawn_delay
        if servers_changed:
            self.probe.configure(config.servers)
            self.backlog.configure(config.servers)
            self.servers_up = {a: u for a, u in self.servers_up.items() if a in config.servers}

        def then(changed: set[str]) -> None:
            if servers_changed or logging_changed:  # every process holds these: replace them all
                log.info("servers or logging changed: replacing every process one by one")
                changed |= set(self.catalog.files)
            try:
                self._apply_plan(changed)
            except Exception as exc:
                self.reloads.done({"ok": False, "applied": False, "error": describe(exc)})
                raise
            self.reloads.done(
                {"ok": True, "applied": True, "broken": dict(sorted(self.catalog.broken.items()))}
            )

        self._begin_scan(validate_all=True, then=then)

    def code_changed(self) -> None:
        """auto_reload: worker files changed, were added or removed."""
        if not self.reloads.request(Kind.CODE):
            return

        def then(changed: set[str]) -> None:
            self.pool.check_capacity(make_plan(self.config, self.catalog.files))
            self._apply_plan(changed)

        try:
            self._begin_scan(validate_all=False, then=then)
        except Exception as exc:
            log.error("code reload failed, keeping what runs: %s", describe(exc))

    def _begin_scan(self, validate_all: bool, then: Callable[[set[str]], None]) -> None:
        """Rescan the worker folders; validate in a throwaway fork that the loop waits on
        through the selector, so reaping and signals go on meanwhile; then ``then(changed)``."""
        pending = self.catalog.start_scan(
            self.config, validate_all, in_child=self._in_validation_child
        )
        if pending.validation is None:
            then(self.catalog.finish_scan(pending, {}))
            return
        self.reloads.scanning(pending, then)
        self._selector.register(pending.validation.fd, selectors.EVENT_READ, "validation")

    def _validation_due(self, now: float) -> bool:
        job = self.reloads.scan.validation if self.reloads.scan is not None else None
        return job is not None and now >= job.deadline

    def _finish_scan(self) -> None:
        pending, then, rescan = self.reloads.finished()
        job = pending.validation
        assert job is not None
        try:
            self._selector.unregister(job.fd)
        except (KeyError, ValueError):
            pass
        try:
            then(self.catalog.finish_scan(pending, job.results()))
        except Exception as exc:
            log.error("reload failed, keeping what runs: %s", describe(exc))
        if rescan is Kind.RELOAD:
            self.reload()
        elif rescan is Kind.CODE:
            self.code_changed()

    def _cancel_scan(self) -> None:
        pending = self.reloads.cancel()
        job = pending.validation if pending is not None else None
        if job is not None:
            try:
                self._selector.unregister(job.fd)
            except (KeyError, ValueError):
                pass
            job.cancel()

    def _apply_plan(self, changed_code: set[str]) -> None:
        plan = self._current_plan()
        self._execute(
            self.pool.reconcile(plan, changed_code, self.catalog.broken, time.monotonic())
        )

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


def describe(exc: BaseException) -> str:
    """An exception in one line, bounded: its own text for the errors gearmgr expects, its type
    too for anything else (a bug, logged with its traceback at debug)."""
    if isinstance(exc, (FatalError, OSError, ValueError)):
        text = str(exc)
    else:
        log.debug("reload failed", exc_info=exc)
        text = f"internal error: {type(exc).__name__}: {exc}"
    return one_line(" ".join(text.split()))
