"""Config text and files to a :class:`Config`: the size limit, YAML errors as
:class:`ConfigError`, what the config names on this machine (folders, user, group), and which
file to use (``-c``, ``$GEARMGR_CONFIG``, ``./gearmgr.yaml``).

Loading is bounded (docs/configuration.md, "Limits"): the file's size here, the YAML's depth,
values (aliases expanded), integers and characters in :mod:`gearmgr.yamlread`, and each value's
range in its parser (:mod:`gearmgr.config.values`).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gearmgr.config.build import KeyPath, Source, config_from_dict
from gearmgr.config.settings import Config, ConfigError
from gearmgr.units import format_size, show_value
from gearmgr.yamlread import YAMLProblem, read_yaml

ENV_VAR = "GEARMGR_CONFIG"
DEFAULT_FILE = "gearmgr.yaml"
MAX_FILE_SIZE = 1024 * 1024  # bytes; a config is a few KiB


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


def parse_config(text: str, path: str | os.PathLike[str] | None = None) -> Config:
    """A Config from YAML ``text``; ``path`` names the file for errors and relative paths.

    Nothing on this machine is looked at: :func:`load_config` does that."""
    return _parse(text, path)[0]


def _parse(text: str, path: str | os.PathLike[str] | None) -> tuple[Config, Source]:
    source = os.fspath(path) if path is not None else "<config>"
    data, lines = _read_yaml(text, source)
    return config_from_dict(data, path, lines=lines), Source(source, lines)


def load_config(
    path: str | os.PathLike[str], *, check_system: bool = True, regular_only: bool = False
) -> Config:
    """Read and validate the config file at ``path``; ConfigError if it cannot be used.

    At most :data:`MAX_FILE_SIZE` bytes are read. With ``check_system``, what the config names
    on this machine is checked too: the folders of ``log_file`` and ``pid_file`` exist, and so
    do ``user`` and ``group``. With ``regular_only`` (a reload, in the supervisor's loop), a
    path that is not a regular file (a FIFO nobody writes to, a device) is refused at once
    instead of blocking the read."""
    source = os.fspath(path)
    try:
        flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NONBLOCK if regular_only else 0)
        with open(os.open(path, flags), "rb") as file:
            if regular_only and not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ConfigError("cannot read the config: not a regular file", file=source)
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


def _check_folders(src: Source, config: Config) -> None:
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


def _check_accounts(src: Source, config: Config) -> None:
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
