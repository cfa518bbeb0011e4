"""Parsed YAML to a :class:`Config`: every key through its parser, ``functions:`` overrides,
the checks that span keys, relative paths resolved against the config's folder. Every error is
a :class:`ConfigError` naming the file, the line and the key (:class:`Source`)."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gearmgr.config.keys import FUNCTION_KEYS, GLOBAL_KEYS, KEY, Key
from gearmgr.config.settings import Config, ConfigError, FunctionSettings
from gearmgr.units import is_loopback, parse_address, show_value

MAX_SOCKET_PATH_BYTES = 107  # sun_path (108 bytes on Linux) less the NUL
KeyPath = tuple[str, ...]


@dataclass
class Source:
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

    def error(
        self, path: tuple[object, ...], problem: str, at: tuple[object, ...] | None = None
    ) -> ConfigError:
        """``problem`` of the key at ``path``, on the line of ``at`` (default: of ``path``)."""
        key = ".".join(str(part) for part in path) or None
        line = self.line(path if at is None else at)
        return ConfigError(problem, file=self.file, line=line, key=key)

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
        return self.error(parent, problem, at=(*parent, name))


def _function_overrides(src: Source, raw: object) -> dict[str, dict[str, Any]]:
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
    src: Source, settings: FunctionSettings, path: KeyPath, given: Mapping[str, Any]
) -> None:
    """``dedicated_only`` needs at least one process of its own."""
    if settings.dedicated_only and settings.dedicated_count < 1:
        key = "dedicated_only" if "dedicated_only" in given else "dedicated_count"
        problem = (
            "expected dedicated_count >= 1 with dedicated_only: true (they are the function's"
            f" only processes), got dedicated_count: {settings.dedicated_count}"
        )
        raise src.error((*path, key), problem)


def _check_elastic(
    src: Source, settings: FunctionSettings, path: KeyPath, given: Mapping[str, Any]
) -> None:
    """``max_processes`` is 0 (a fixed pool) or at least the floor, ``dedicated_count``."""
    if settings.max_processes and settings.max_processes < settings.dedicated_count:
        key = "max_processes" if "max_processes" in given else "dedicated_count"
        problem = (
            "expected max_processes: 0 (a fixed pool) or at least dedicated_count"
            f" ({settings.dedicated_count}, the floor), got max_processes: {settings.max_processes}"
        )
        raise src.error((*path, key), problem)


def _check_embedded(src: Source, config: Config) -> None:
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
    src = Source(os.fspath(path) if path is not None else "<config>", lines or {})
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
    _check_elastic(src, defaults, (), values)
    functions: dict[str, FunctionSettings] = {}
    for name, given in overrides.items():
        functions[name] = dataclasses.replace(defaults, **given)
        _check_dedicated(src, functions[name], ("functions", name), given)
        _check_elastic(src, functions[name], ("functions", name), given)
    config_path = Path(os.path.abspath(path)) if path is not None else None
    base = config_path.parent if config_path is not None else Path.cwd()
    settings = _global_settings(values, base)
    config = Config(path=config_path, defaults=defaults, functions=functions, **settings)
    _check_embedded(src, config)
    _check_socket_path(src, config.control_socket)
    return config


def _check_socket_path(src: Source, path: Path) -> None:
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
