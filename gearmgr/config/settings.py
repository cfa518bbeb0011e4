"""What a loaded config is: :class:`Config` (global settings, per-function defaults and
overrides), :class:`FunctionSettings` (the values in force for one function) and
:class:`ConfigError` (a config that cannot be used, as one line naming file, line and key)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gearmgr.errors import GearmgrError


@dataclass(frozen=True)
class FunctionSettings:
    """The effective per-function values: the top-level defaults overridden by functions.NAME."""

    dedicated_count: int = 1
    dedicated_only: bool = False
    max_processes: int = 0  # 0 = a fixed pool of dedicated_count
    backlog_per_process: int = 1
    scale_down_delay: float = 30.0  # seconds
    concurrency: int = 1  # jobs an async function's dedicated process runs at once
    max_jobs: int = 0
    max_lifetime: float = 0.0  # seconds
    lifetime_jitter: float = 0.0  # seconds
    max_memory: int = 0  # bytes
    timeout: float = 0.0  # seconds
    graceful_timeout: float = 30.0  # seconds
    poison_after: int = 3  # deaths of one job before it is quarantined (0 = never)


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
    failed_jobs: Path | None = Path("gearmgr-failed.db")  # None: recording off
    failed_jobs_keep: float = 7 * 86400.0  # seconds
    failed_jobs_max: int = 100_000
    defaults: FunctionSettings = field(default_factory=FunctionSettings)
    functions: dict[str, FunctionSettings] = field(default_factory=dict)

    def function(self, name: str) -> FunctionSettings:
        """The settings in force for function ``name``."""
        return self.functions.get(name, self.defaults)

    def elastic(self, name: str) -> bool:
        """Whether function ``name``'s dedicated pool grows and shrinks with the backlog."""
        settings = self.function(name)
        return settings.max_processes > settings.dedicated_count

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
