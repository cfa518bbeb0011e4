"""Configuration: every key declared once; loading, validation and errors.

Each key is one :class:`Key` in :data:`KEYS` with its parser, default, unit, help text,
GearmanManager name and scope. Loading (:func:`load_config`, :func:`parse_config`), the docs table
(:func:`config_reference_markdown`, ``python -m gearmgr.config --markdown``), ``gearmgr check`` and
``gearmgr import-ini`` all read that one declaration.

A config that cannot be used raises :class:`ConfigError`, whose text is one line in attrs' tone:
where, which key, what was expected, what was given::

    etc/gearmgr.yaml:12: functions.reverse.max_memory: expected a size like "256MiB", got "lots"
    etc/gearmgr.yaml:3: unknown key "max_job" (did you mean "max_jobs"?)
    etc/gearmgr.yaml:4:9: invalid YAML: mapping values are not allowed in this context

Loading is bounded (docs/configuration.md, "Limits"): the file's size here, the YAML's depth,
values (aliases expanded), integers and characters in :mod:`gearmgr.yamlread`, and each value's
range in its parser. :func:`load_config` also checks what the config names on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import grp
import os
import pwd
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gearmgr.errors import GearmgrError
from gearmgr.units import (
    format_address,
    format_duration,
    format_size,
    is_loopback,
    parse_address,
    parse_duration,
    parse_size,
    show_value,
)
from gearmgr.yamlread import YAMLProblem, read_yaml

LOG_LEVELS = ("debug", "info", "warning", "error")
ENV_VAR = "GEARMGR_CONFIG"
DEFAULT_FILE = "gearmgr.yaml"

# Limits (docs/configuration.md, "Limits"). YAML's own (depth, values, integers) are in yamlread.
MAX_FILE_SIZE = 1024 * 1024  # bytes; a config is a few KiB
MAX_PROCESSES = 1000  # count, dedicated_count; the plan's own limit (gearmgr.plan) is the same
MAX_JOBS = 1_000_000_000
MAX_PATH_BYTES = 4095  # PATH_MAX (4096) less the NUL
MAX_SOCKET_PATH_BYTES = 107  # sun_path (108 bytes on Linux) less the NUL
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # and lone surrogates


@dataclass(frozen=True)
class FunctionSettings:
    """The effective per-function values: the top-level defaults overridden by functions.NAME."""

    dedicated_count: int = 1
    dedicated_only: bool = False
    max_jobs: int = 0
    max_lifetime: float = 0.0  # seconds
    lifetime_jitter: float = 0.0  # seconds
    max_memory: int = 0  # bytes
    timeout: float = 0.0  # seconds
    graceful_timeout: float = 30.0  # seconds


@dataclass(frozen=True)
class Config:
    """A loaded config: global settings, per-function ``defaults`` and ``functions`` overrides.

    Paths are absolute once loaded by :func:`load_config`; ``path`` is the file itself.
    """

    path: Path | None = None
    servers: tuple[str, ...] = ("127.0.0.1:4730",)
    embedded_server: bool = False
    worker_dirs: tuple[Path, ...] = (Path("workers"),)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    count: int = 0
    spawn_delay: float = 0.0
    auto_reload: bool = False
    control_socket: Path = Path("gearmgr.sock")
    pid_file: Path | None = None
    user: str | None = None
    group: str | None = None
    log_file: str | None = None
    log_level: str = "info"
    metrics: str | None = None
    defaults: FunctionSettings = field(default_factory=FunctionSettings)
    functions: dict[str, FunctionSettings] = field(default_factory=dict)

    def function(self, name: str) -> FunctionSettings:
        """The settings in force for function ``name``."""
        return self.functions.get(name, self.defaults)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def unused_function_settings(self, functions: Iterable[str]) -> list[str]:
        """Warnings about ``functions.NAME`` entries for which no worker file runs, each naming
        the key and the closest function that does: ``functions.r_typo: no worker file defines
        this function (did you mean "reverse"?)``. ``functions`` are the names found in the
        worker folders (after include and exclude); a name listed in ``exclude`` is not reported."""
        found = sorted(functions)
        warnings = []
        for name in sorted(self.functions):
            if name in found or name in self.exclude:
                continue
            if self.include and name not in self.include:
                problem = "include leaves this function out, so these settings are not used"
            else:
                problem = "no worker file defines this function"
            close = difflib.get_close_matches(name, found, n=1)
            if close:
                problem += f' (did you mean "{close[0]}"?)'
            warnings.append(f"functions.{name}: {problem}")
        return warnings


class ConfigError(GearmgrError):
    """A config file that cannot be used. ``str(error)`` is the one line to show the user.

    The parts are kept as attributes too: ``file``, ``line`` and ``column`` (1-based, None when
    unknown), ``key`` (the dotted key path, None for the file as a whole) and ``problem``.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = ": ".join(part for part in (where, self.key, self.problem) if part)
        return " ".join(text.splitlines())  # one line, whatever a library's message holds


# --- value parsers: each takes what YAML gave and returns the value, or raises ValueError ---------


def _expected(what: str, value: object) -> ValueError:
    return ValueError(f"expected {what}, got {show_value(value)}")


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _expected("true or false", value)


def _whole(value: object, maximum: int, why: str = "") -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value > maximum:
            raise _expected(f"at most {maximum}{why}", value)
        return value
    raise _expected("a whole number >= 0", value)


def _count(value: object) -> int:
    """A number of processes."""
    return _whole(value, MAX_PROCESSES, f" (gearmgr runs at most {MAX_PROCESSES} processes)")


def _jobs(value: object) -> int:
    return _whole(value, MAX_JOBS)


def _strings(value: object, what: str) -> tuple[str, ...]:
    """A list of non-empty strings; a single string is split on commas, as GearmanManager does."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        return tuple(item.strip() for item in value)
    raise _expected(what, value)


def _servers(value: object) -> tuple[str, ...]:
    entries = _strings(value, 'a list of "HOST:PORT"')
    if not entries:
        raise _expected('at least one "HOST:PORT"', value)
    return tuple(format_address(*parse_address(entry)) for entry in entries)


def _metrics(value: object) -> str:
    if not isinstance(value, str):
        raise _expected('"HOST:PORT"', value)
    return format_address(*parse_address(value, default_port=None))


def _names(value: object) -> tuple[str, ...]:
    return () if value is None else _strings(value, "a list of function names")


def _path(value: object) -> Path:
    if isinstance(value, str) and value.strip():
        return Path(_path_text(value.strip()))
    raise _expected("a path", value)


def _path_text(text: str) -> str:
    """``text`` if the OS can take it as a path: no control characters, at most PATH_MAX."""
    if _CONTROL.search(text):
        raise _expected("a path without control characters", text)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise ValueError(f"expected a path of at most {MAX_PATH_BYTES} bytes, got {size} bytes")
    return text


def _paths(value: object) -> tuple[Path, ...]:
    """A list of folders; a single string is one folder (a comma is a valid path character)."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, list) and items and all(isinstance(i, str) and i.strip() for i in items):
        return tuple(Path(_path_text(item.strip())) for item in items)
    raise _expected("a list of folders", value)


def _text(value: object) -> str:
    if isinstance(value, str) and value.strip() and not _CONTROL.search(value):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a numeric uid or gid
    raise _expected("a name", value)


def _log_file(value: object) -> str:
    return "syslog" if value == "syslog" else str(_path(value))


def _log_level(value: object) -> str:
    if isinstance(value, str) and value.lower() in LOG_LEVELS:
        return value.lower()
    raise _expected("one of " + ", ".join(f'"{level}"' for level in LOG_LEVELS), value)


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    """``parse`` that also accepts null (None), for keys whose default is "none"."""

    def parse_optional(value: object) -> Any:
        return None if value is None else parse(value)

    return parse_optional


# --- the declarations ----------------------------------------------------------------------------

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
    Key("servers", _servers, ("127.0.0.1:4730",), type='list of "HOST:PORT"', gm_name="host",
        help="job servers; every worker process connects to all of them (port 4730 when omitted)"),
    Key("embedded_server", _bool, False, type="bool",
        help="`true`: gearmgr starts and supervises its own `gearmand` listening on the first"
        " `servers` entry (must be loopback), with a persistent queue file beside the config"),
    Key("worker_dirs", _paths, (Path("workers"),), type="list of paths", gm_name="worker_dir",
        is_path=True, help="folders searched for `*.py` worker files"),
    Key("include", _names, (), type="list of names", gm_name="include",
        help="function names to keep (`[]` = all)"),
    Key("exclude", _names, (), type="list of names", gm_name="exclude",
        help="function names to drop"),
    Key("count", _count, 0, type="int 0..1000", gm_name="count",
        help="processes that register every function that is not `dedicated_only`"),
    _function_key("dedicated_count", _count, 1, type="int 0..1000", gm_name="dedicated_count",
        help="processes per function that register only that function"),
    _function_key("dedicated_only", _bool, False, type="bool", gm_name="dedicated_only",
        help="never registered by the `count` processes: the function runs on exactly"
        " `dedicated_count` processes, which must be at least 1"),
    _function_key("max_jobs", _jobs, 0, type="int >= 0", gm_name="max_runs_per_worker",
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
    Key("spawn_delay", parse_duration, 0.0, type="duration", unit="duration",
        gm_name="worker_initial_spawn_splay",
        help="pause between starting processes at start-up"),
    Key("auto_reload", _bool, False, type="bool", gm_name="auto_update",
        help="restart the processes whose worker code changed; pick up added and removed"
        " worker files"),
    Key("control_socket", _path, Path("gearmgr.sock"), type="path", is_path=True,
        help="unix socket of the running supervisor (mode 0600)"),
    Key("pid_file", _optional(_path), None, type="path", gm_name="pid_file", is_path=True,
        help="written and locked while running"),
    Key("user", _optional(_text), None, type="name", gm_name="user",
        help="drop privileges to this user before starting workers"),
    Key("group", _optional(_text), None, type="name",
        help="drop privileges to this group before starting workers (default: the user's group)"),
    Key("log_file", _optional(_log_file), None, type="path or `syslog`", gm_name="log_file",
        is_path=True, shown_default="none (stderr)",
        help="a path (reopened on SIGUSR1), or `syslog`"),
    Key("log_level", _log_level, "info", type="level", gm_name="verbose",
        help="`debug`, `info`, `warning` or `error`"),
    Key("metrics", _optional(_metrics), None, type='"HOST:PORT"',
        help="serve Prometheus metrics over HTTP on this address"),
)
# fmt: on
KEY: dict[str, Key] = {key.name: key for key in KEYS}
FUNCTION_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS if key.scope == "function")
GLOBAL_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS if key.scope == "global")


# --- reading YAML ------------------------------------------------------------------------------

KeyPath = tuple[str, ...]


def _read_yaml(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    """The document and the line of every mapping key, by key path; ConfigError on bad YAML
    and on anything past the bounds of :mod:`gearmgr.yamlread` or :data:`MAX_FILE_SIZE`."""
    if len(text) > MAX_FILE_SIZE:
        raise _too_big(source, len(text.encode("utf-8", "replace")))
    try:
        return read_yaml(text)
    except YAMLProblem as exc:
        raise ConfigError(
            exc.problem, file=source, line=exc.line, column=exc.column, key=exc.key
        ) from None


def _too_big(source: str, size: int) -> ConfigError:
    limit = format_size(MAX_FILE_SIZE)
    return ConfigError(f"expected a config file of at most {limit}, got {size} bytes", file=source)


# --- building a Config ---------------------------------------------------------------------------


@dataclass
class _Source:
    """Where the values came from, to word errors: the file name and the line of each key."""

    file: str
    lines: dict[KeyPath, int]

    def line(self, path: tuple[object, ...]) -> int | None:
        """The line of the key at ``path``, else of its nearest parent that has one."""
        keys = tuple(str(part) for part in path)
        for end in range(len(keys), -1, -1):
            if keys[:end] in self.lines:
                return self.lines[keys[:end]]
        return None

    def error(self, path: tuple[object, ...], problem: str) -> ConfigError:
        key = ".".join(str(part) for part in path) or None
        return ConfigError(problem, file=self.file, line=self.line(path), key=key)

    def parse(self, key: Key, value: object, path: tuple[object, ...]) -> Any:
        try:
            return key.parse(value)
        except ValueError as exc:
            raise self.error(path, str(exc)) from None

    def unknown(self, parent: tuple[object, ...], name: object, known: list[str]) -> ConfigError:
        """``unknown key "max_job" (did you mean "max_jobs"?)``, on the line of that key."""
        problem = f"unknown key {show_value(name)}"
        close = difflib.get_close_matches(str(name), known, n=1)
        if close:
            problem += f' (did you mean "{close[0]}"?)'
        key = ".".join(str(part) for part in parent) or None
        return ConfigError(problem, file=self.file, line=self.line((*parent, name)), key=key)


def _function_overrides(src: _Source, raw: object) -> dict[str, dict[str, Any]]:
    """``functions:`` -> ``{NAME: {key: parsed value}}``; only function-scoped keys allowed."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise src.error(
            ("functions",),
            f"expected a mapping of function names to settings, got {show_value(raw)}",
        )
    overrides: dict[str, dict[str, Any]] = {}
    for name, settings in raw.items():
        path: tuple[object, ...] = ("functions", name)
        if not isinstance(name, str) or not name:
            raise src.error(path, f"expected a function name, got {show_value(name)}")
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise src.error(
                path, f"expected a mapping of settings (or null), got {show_value(settings)}"
            )
        overrides[name] = {}
        for key_name, value in settings.items():
            if key_name in GLOBAL_KEYS:
                problem = f"{key_name} is global-only: set it at the top level, not per function"
                raise src.error((*path, key_name), problem)
            if key_name not in FUNCTION_KEYS:
                raise src.unknown(path, key_name, list(FUNCTION_KEYS))
            overrides[name][key_name] = src.parse(KEY[key_name], value, (*path, key_name))
    return overrides


def _resolve(value: Any, base: Path) -> Any:
    """Relative paths (and tuples of them) joined to ``base``; ``syslog`` and None kept."""
    if isinstance(value, tuple):
        return tuple(_resolve(item, base) for item in value)
    if value is None or value == "syslog":
        return value
    # normpath: "etc/../workers" reads as the folder it names (as a shell's `cd` would see it).
    resolved = Path(os.path.normpath(base / Path(value).expanduser()))
    return str(resolved) if isinstance(value, str) else resolved


def _check_dedicated(
    src: _Source, settings: FunctionSettings, path: KeyPath, given: Mapping[str, Any]
) -> None:
    """``dedicated_only`` needs at least one process of its own."""
    if settings.dedicated_only and settings.dedicated_count < 1:
        key = "dedicated_only" if "dedicated_only" in given else "dedicated_count"
        problem = (
            "expected dedicated_count >= 1 with dedicated_only: true (they are the function's"
            f" only processes), got dedicated_count: {settings.dedicated_count}"
        )
        raise src.error((*path, key), problem)


def _check_embedded(src: _Source, config: Config) -> None:
    if config.embedded_server and not is_loopback(parse_address(config.servers[0])[0]):
        problem = (
            "expected the first servers entry to be a loopback address (127.0.0.1, localhost"
            f" or ::1) for the embedded gearmand, got {show_value(config.servers[0])}"
        )
        raise src.error(("embedded_server",), problem)


def config_from_dict(
    data: Mapping[str, Any] | None,
    path: str | os.PathLike[str] | None = None,
    *,
    lines: dict[KeyPath, int] | None = None,
) -> Config:
    """Validate already-parsed YAML ``data`` into a Config. ``path`` is the file it came from:
    relative paths are resolved against its folder (the current folder when None) and errors
    name it; ``lines`` maps key paths to line numbers for those errors."""
    src = _Source(os.fspath(path) if path is not None else "<config>", lines or {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise src.error((), f"expected a mapping of keys at the top level, got {show_value(data)}")
    values: dict[str, Any] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for name, value in data.items():
        if name == "functions":
            overrides = _function_overrides(src, value)
        elif name in KEY:
            values[name] = src.parse(KEY[name], value, (name,))
        else:
            raise src.unknown((), name, [*KEY, "functions"])
    defaults = FunctionSettings(**{k: values[k] for k in FUNCTION_KEYS if k in values})
    _check_dedicated(src, defaults, (), values)
    functions: dict[str, FunctionSettings] = {}
    for name, given in overrides.items():
        functions[name] = dataclasses.replace(defaults, **given)
        _check_dedicated(src, functions[name], ("functions", name), given)
    config_path = Path(os.path.abspath(path)) if path is not None else None
    base = config_path.parent if config_path is not None else Path.cwd()
    settings = _global_settings(values, base)
    config = Config(path=config_path, defaults=defaults, functions=functions, **settings)
    _check_embedded(src, config)
    _check_socket_path(src, config.control_socket)
    return config


def _check_socket_path(src: _Source, path: Path) -> None:
    """A unix socket's address holds at most 107 bytes of path (sun_path, on Linux)."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        problem = (
            f"expected a path of at most {MAX_SOCKET_PATH_BYTES} bytes (a unix socket's limit),"
            f" got {size} bytes: {show_value(str(path))}"
        )
        raise src.error(("control_socket",), problem)


def _global_settings(values: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Every global key: its value or its default, paths resolved against ``base``."""
    settings = {name: values.get(name, KEY[name].default) for name in GLOBAL_KEYS}
    for name in GLOBAL_KEYS:
        if KEY[name].is_path:
            settings[name] = _resolve(settings[name], base)
    return settings


def parse_config(text: str, path: str | os.PathLike[str] | None = None) -> Config:
    """A Config from YAML ``text``; ``path`` names the file for errors and relative paths.

    Nothing on this machine is looked at: :func:`load_config` does that."""
    return _parse(text, path)[0]


def _parse(text: str, path: str | os.PathLike[str] | None) -> tuple[Config, _Source]:
    source = os.fspath(path) if path is not None else "<config>"
    data, lines = _read_yaml(text, source)
    return config_from_dict(data, path, lines=lines), _Source(source, lines)


def load_config(path: str | os.PathLike[str], *, check_system: bool = True) -> Config:
    """Read and validate the config file at ``path``; ConfigError if it cannot be used.

    At most :data:`MAX_FILE_SIZE` bytes are read. With ``check_system``, what the config names
    on this machine is checked too: the folders of ``log_file`` and ``pid_file`` exist, and so
    do ``user`` and ``group``."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_SIZE + 1)
            if len(data) > MAX_FILE_SIZE:
                raise _too_big(source, max(os.fstat(file.fileno()).st_size, len(data)))
    except OSError as exc:
        raise ConfigError(f"cannot read the config: {exc.strerror}", file=source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("cannot read the config: not UTF-8 text", file=source) from None
    config, src = _parse(text, path)
    if check_system:
        _check_folders(src, config)
        _check_accounts(src, config)
    return config


def _check_folders(src: _Source, config: Config) -> None:
    """The files gearmgr creates must go into folders that exist."""
    for name in ("pid_file", "log_file"):
        value = getattr(config, name)
        if value is None or value == "syslog":
            continue
        folder = Path(value).parent
        if not folder.is_dir():
            problem = (
                f"expected a file in an existing folder, got {show_value(str(value))}"
                f" (no folder {folder})"
            )
            raise src.error((name,), problem)


def _check_accounts(src: _Source, config: Config) -> None:
    """``user`` and ``group`` exist here (looked up by name, as ``gearmgr run`` does)."""
    for name, lookup in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
        value = getattr(config, name)
        if value is None:
            continue
        try:
            lookup(value)
        except KeyError:
            problem = f"expected an existing {name}, got {show_value(value)}"
            raise src.error((name,), problem) from None


def find_config_path(explicit: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The config file to use: ``-c`` when given, then ``$GEARMGR_CONFIG``, then ./gearmgr.yaml."""
    return Path(explicit or environ.get(ENV_VAR) or DEFAULT_FILE)


# --- docs ----------------------------------------------------------------------------------------


def config_reference_markdown() -> str:
    """The key table of docs/configuration.md, generated from :data:`KEYS`."""
    rows = [
        "| key | default | type | scope | GearmanManager | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for key in KEYS:
        gm_name = f"`{key.gm_name}`" if key.gm_name else "—"
        cells = (f"`{key.name}`", key.default_text(), key.type, key.scope, gm_name, key.help)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m gearmgr.config --markdown``: print the key reference table."""
    parser = argparse.ArgumentParser(prog="python -m gearmgr.config")
    parser.add_argument("--markdown", action="store_true", required=True, help="print the table")
    parser.parse_args(argv)
    sys.stdout.write(config_reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
