"""Configuration: every key declared once; loading, validation and errors.

(Skeleton: the dataclasses below are the interface the rest of gearmgr uses. Loading and
validation are filled in around them.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
