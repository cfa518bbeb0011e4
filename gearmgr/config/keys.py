"""The declaration of every config key, once: :class:`Key` (parser, default, unit, help text,
GearmanManager name, scope) and the :data:`KEYS` table. Loading, the docs table, ``gearmgr
check`` and ``gearmgr import-ini`` all read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gearmgr.config.values import (
    boolean,
    concurrency,
    count,
    jobs,
    log_file,
    log_level,
    metrics,
    names,
    optional,
    optional_path,
    path,
    paths,
    per_process,
    records,
    servers,
    text,
)
from gearmgr.units import format_duration, format_size, parse_duration, parse_size, show_value

Scope = Literal["global", "function"]


@dataclass(frozen=True)
class Key:
    """One config key: everything validation, docs, ``check`` and ``import-ini`` need to know."""

    name: str
    parse: Callable[[object], Any]
    default: Any
    help: str = ""
    type: str = ""  # for humans, in the docs table
    scope: Scope = "global"
    unit: Literal["duration", "size"] | None = None
    gm_name: str | None = None
    is_path: bool = False  # resolved against the config file's folder
    shown_default: str | None = None  # the docs' default column, when the value does not say it

    def format(self, value: Any) -> str:
        """``value`` as a user would write it: ``30s``, ``256MiB``, ``true``, ``["a", "b"]``."""
        if self.unit == "duration":
            return format_duration(value)
        if self.unit == "size":
            return format_size(value)
        if isinstance(value, tuple):
            return show_value([str(item) for item in value])
        if value is None:
            return "none"
        return show_value(value) if isinstance(value, bool) else str(value)

    def default_text(self) -> str:
        """The default as the docs show it (Markdown); zero durations and sizes read ``0``."""
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "none"
        if self.unit is not None and not self.default:
            return "`0`"
        return f"`{self.format(self.default)}`"


def _function_key(name: str, parse: Callable[[object], Any], default: Any, **kw: Any) -> Key:
    return Key(name, parse, default, scope="function", **kw)


# The order here is the order of the docs table and of import-ini's output. Laid out as a table,
# one key per paragraph, so the formatter is told to keep its hands off.
# fmt: off
KEYS: tuple[Key, ...] = (
    Key("servers", servers, ("127.0.0.1:4730",), type='list of "HOST:PORT"', gm_name="host",
        help="job servers; every worker process connects to all of them (port 4730 when omitted)"),
    Key("embedded_server", boolean, False, type="bool",
        help="`true`: gearmgr starts and supervises its own `gearmand` listening on the first"
        " `servers` entry (must be loopback), with a persistent queue file beside the config"),
    Key("worker_dirs", paths, (Path("workers"),), type="list of paths", gm_name="worker_dir",
        is_path=True, help="folders searched for `*.py` worker files"),
    Key("include", names, (), type="list of names", gm_name="include",
        help="function names to keep (`[]` = all)"),
    Key("exclude", names, (), type="list of names", gm_name="exclude",
        help="function names to drop"),
    Key("count", count, 0, type="int 0..1000", gm_name="count",
        help="processes that register every function that is not `dedicated_only`"),
    _function_key("dedicated_count", count, 1, type="int 0..1000", gm_name="dedicated_count",
        help="processes per function that register only that function"),
    _function_key("dedicated_only", boolean, False, type="bool", gm_name="dedicated_only",
        help="never registered by the `count` processes: the function runs on exactly"
        " `dedicated_count` processes, which must be at least 1"),
    _function_key("max_processes", count, 0, type="int 0..1000",
        help="`0` keeps the pool fixed at `dedicated_count`. Above it, the function's dedicated"
        " pool grows and shrinks between `dedicated_count` (the floor, may be `0`) and"
        " `max_processes` with the backlog at the job servers"),
    _function_key("backlog_per_process", per_process, 1, type="int >= 1",
        help="jobs waiting per extra process an elastic pool aims for"),
    _function_key("scale_down_delay", parse_duration, 30.0, type="duration", unit="duration",
        help="an elastic pool shrinks only after its function has had no waiting job for this"
        " long"),
    _function_key("concurrency", concurrency, 1, type="int 1..10000",
        help="jobs of an `async def` function that one of its dedicated processes runs at once"
        " (the shared `count` processes run one at a time); above 1 on a plain `def` function"
        " is an error"),
    _function_key("max_jobs", jobs, 0, type="int >= 0", gm_name="max_runs_per_worker",
        help="recycle a process after it has done this many jobs (0 = never)"),
    _function_key("max_lifetime", parse_duration, 0.0, type="duration", unit="duration",
        gm_name="max_worker_lifetime",
        help="recycle a process once it is this old, between jobs (0 = never)"),
    _function_key("lifetime_jitter", parse_duration, 0.0, type="duration", unit="duration",
        gm_name="worker_restart_splay",
        help="each process adds a random 0..jitter to its `max_lifetime`"),
    _function_key("max_memory", parse_size, 0, type="size", unit="size",
        help="recycle a process after a job when its RSS exceeds this (0 = never)"),
    _function_key("timeout", parse_duration, 0.0, type="duration", unit="duration",
        gm_name="timeout",
        help="a job running longer is abandoned: its process is killed and replaced, and the job"
        " is reported failed to the server (0 = none)"),
    _function_key("graceful_timeout", parse_duration, 30.0, type="duration", unit="duration",
        gm_name="graceful_shutdown_wait_time",
        help="how long a stopping process may take to finish its current job before SIGKILL"),
    _function_key("poison_after", jobs, 3, type="int >= 0",
        help="a job whose run has killed this many processes is quarantined: the next process"
        " that gets it fails it at once (`0` = never)"),
    Key("spawn_delay", parse_duration, 0.0, type="duration", unit="duration",
        gm_name="worker_initial_spawn_splay",
        help="pause between starting processes at start-up"),
    Key("auto_reload", boolean, False, type="bool", gm_name="auto_update",
        help="restart the processes whose worker code changed; pick up added and removed"
        " worker files"),
    Key("control_socket", path, Path("gearmgr.sock"), type="path", is_path=True,
        help="unix socket of the running supervisor (mode 0600)"),
    Key("pid_file", optional(path), None, type="path", gm_name="pid_file", is_path=True,
        help="written and locked while running"),
    Key("user", optional(text), None, type="name", gm_name="user",
        help="drop privileges to this user before starting workers"),
    Key("group", optional(text), None, type="name",
        help="drop privileges to this group before starting workers (default: the user's group)"),
    Key("log_file", optional(log_file), None, type="path or `syslog`", gm_name="log_file",
        is_path=True, shown_default="none (stderr)",
        help="a path (reopened on SIGUSR1), or `syslog`"),
    Key("log_level", log_level, "info", type="level", gm_name="verbose",
        help="`debug`, `info`, `warning` or `error`"),
    Key("metrics", optional(metrics), None, type='"HOST:PORT"',
        help="serve Prometheus metrics over HTTP on this address"),
    Key("failed_jobs", optional_path, Path("gearmgr-failed.db"), type="path or `none`",
        is_path=True, shown_default="`gearmgr-failed.db` beside the config",
        help="the SQLite file where every failed job is recorded; `none` turns recording off"),
    Key("failed_jobs_keep", parse_duration, 7 * 86400.0, type="duration", unit="duration",
        shown_default="`7d`", help="failed-job records older than this are deleted"),
    Key("failed_jobs_max", records, 100_000, type="int >= 1",
        help="at most this many failed-job records are kept (oldest deleted first)"),
)
# fmt: on
KEY: dict[str, Key] = {key.name: key for key in KEYS}
FUNCTION_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS if key.scope == "function")
GLOBAL_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS if key.scope == "global")
