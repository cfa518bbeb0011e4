"""The value parsers of the config keys: each takes what YAML gave and returns the value, or
raises ``ValueError`` saying what was expected and what was given (the loader adds the file,
line and key). Each value's range is checked here (docs/configuration.md, "Limits")."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gearmgr.units import format_address, parse_address, show_value

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_PROCESSES = 1000  # count, dedicated_count; the plan's own limit (gearmgr.plan) is the same
MAX_JOBS = 1_000_000_000
MAX_PATH_BYTES = 4095  # PATH_MAX (4096) less the NUL
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # and lone surrogates


def expected(what: str, value: object) -> ValueError:
    return ValueError(f"expected {what}, got {show_value(value)}")


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise expected("true or false", value)


def whole(value: object, maximum: int, why: str = "") -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value > maximum:
            raise expected(f"at most {maximum}{why}", value)
        return value
    raise expected("a whole number >= 0", value)


def count(value: object) -> int:
    """A number of processes."""
    return whole(value, MAX_PROCESSES, f" (gearmgr runs at most {MAX_PROCESSES} processes)")


def per_process(value: object) -> int:
    """Jobs waiting per extra process: a whole number >= 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        raise expected("a whole number >= 1", value)
    return whole(value, MAX_JOBS)


MAX_CONCURRENCY = 10_000  # jobs one async process holds at once


def concurrency(value: object) -> int:
    """Jobs one process of an async function runs at once: a whole number >= 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        raise expected("a whole number >= 1", value)
    return whole(value, MAX_CONCURRENCY)


def jobs(value: object) -> int:
    return whole(value, MAX_JOBS)


def strings(value: object, what: str) -> tuple[str, ...]:
    """A list of non-empty strings; a single string is split on commas, as GearmanManager does."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        return tuple(item.strip() for item in value)
    raise expected(what, value)


def servers(value: object) -> tuple[str, ...]:
    entries = strings(value, 'a list of "HOST:PORT"')
    if not entries:
        raise expected('at least one "HOST:PORT"', value)
    return tuple(format_address(*parse_address(entry)) for entry in entries)


def metrics(value: object) -> str:
    if not isinstance(value, str):
        raise expected('"HOST:PORT"', value)
    return format_address(*parse_address(value, default_port=None))


def names(value: object) -> tuple[str, ...]:
    return () if value is None else strings(value, "a list of function names")


def path(value: object) -> Path:
    if isinstance(value, str) and value.strip():
        return Path(_path_text(value.strip()))
    raise expected("a path", value)


def _path_text(text: str) -> str:
    """``text`` if the OS can take it as a path: no control characters, at most PATH_MAX."""
    if _CONTROL.search(text):
        raise expected("a path without control characters", text)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise ValueError(f"expected a path of at most {MAX_PATH_BYTES} bytes, got {size} bytes")
    return text


def paths(value: object) -> tuple[Path, ...]:
    """A list of folders; a single string is one folder (a comma is a valid path character)."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, list) and items and all(isinstance(i, str) and i.strip() for i in items):
        return tuple(Path(_path_text(item.strip())) for item in items)
    raise expected("a list of folders", value)


def text(value: object) -> str:
    if isinstance(value, str) and value.strip() and not _CONTROL.search(value):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a numeric uid or gid
    raise expected("a name", value)


def log_file(value: object) -> str:
    return "syslog" if value == "syslog" else str(path(value))


def log_level(value: object) -> str:
    if isinstance(value, str) and value.lower() in LOG_LEVELS:
        return value.lower()
    raise expected("one of " + ", ".join(f'"{level}"' for level in LOG_LEVELS), value)


def optional_path(value: object) -> Path | None:
    """A path, or ``none`` (or null) for "off"."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    return path(value)


def records(value: object) -> int:
    """How many failed-job records to keep: at least 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        raise expected("a whole number >= 1", value)
    return whole(value, MAX_JOBS)


def optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    """``parse`` that also accepts null (None), for keys whose default is "none"."""

    def parse_optional(value: object) -> Any:
        return None if value is None else parse(value)

    return parse_optional
