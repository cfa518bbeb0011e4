"""GearmanManager's ini keys mapped to gearmgr's keys (:class:`Conversion`).

Which GearmanManager key becomes which gearmgr key comes from each key's ``gm_name`` in
:data:`gearmgr.config.KEYS`; what takes more than a rename is converted here: GearmanManager's
hidden defaults written out with a comment, its process formula evaluated into
``dedicated_count``, and warnings for what has no equivalent or behaves differently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gearmgr.cli.ini_read import GLOBAL_SECTION, comma_list, php_bool, php_int, php_number
from gearmgr.config import FUNCTION_KEYS, KEY, KEYS
from gearmgr.units import format_duration
from gearmgr.words import plural

# GearmanManager's values when a key is absent, zero or empty (none of them can be switched off).
GM_LIFETIME = 3600  # max_worker_lifetime, seconds
GM_SPLAY = 600  # worker_restart_splay, seconds
GM_SPAWN_SPLAY_US = 500_000  # worker_initial_spawn_splay, microseconds
GM_SHUTDOWN_WAIT = 60  # graceful_shutdown_wait_time, seconds
_GM_NAMES = {key.gm_name: key.name for key in KEYS if key.gm_name}
# Keys GearmanManager reads in a function section; the rest it ignores.
_GM_FUNCTION_KEYS = {"count", "dedicated_count", "dedicated_only", "timeout", "priority"}


@dataclass
class Entry:
    """One YAML key: its value in gearmgr's terms and an optional end-of-line comment."""

    value: Any
    comment: str | None = None


@dataclass
class Conversion:
    """The YAML being built (top level, functions), the warnings, and GearmanManager's counts."""

    source: str
    top: dict[str, Entry] = field(default_factory=dict)
    functions: dict[str, dict[str, Entry]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    do_all: int = 0  # GearmanManager's count, when > 0
    gm_dedicated: int = 0  # GearmanManager's global dedicated_count, when > 0
    dedicated: int = 1  # the top-level dedicated_count written for gearmgr
    timeout_explained: bool = False

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def put(
        self,
        name: str,
        value: Any,
        origin: str,
        note: str | None = None,
        *,
        where: dict[str, Entry] | None = None,
    ) -> None:
        """Store ``value`` under gearmgr key ``name`` (at the top level unless ``where``) if that
        key accepts it; else warn, quoting ``origin``. ``note`` becomes an end-of-line comment."""
        where = self.top if where is None else where
        try:
            KEY[name].parse(value)
        except ValueError as exc:
            self.warn(f"{origin}: {exc}; left out")
            return
        where[name] = Entry(value, note)


# --- [GearmanManager] ----------------------------------------------------------------------------


def convert_globals(conv: Conversion, values: dict[str, str]) -> None:
    """The [GearmanManager] section, in gearmgr's key order, GearmanManager's defaults included."""
    for gm_name, raw in values.items():
        origin = f"[{GLOBAL_SECTION}] {gm_name} = {raw}"
        if gm_name in _PLAIN:
            _convert_plain(conv, gm_name, raw, origin)
        elif gm_name not in _SPECIAL:
            _warn_unmapped(conv, gm_name, raw, origin)
    for gm_name, convert in _SPECIAL.items():
        given = values.get(gm_name)
        origin = f"[{GLOBAL_SECTION}] {gm_name}" + (
            " (not set)" if given is None else f" = {given}"
        )
        convert(conv, given, origin)
    _warn_relative_paths(conv)
    conv.top = {key.name: conv.top[key.name] for key in KEYS if key.name in conv.top}


def _convert_plain(conv: Conversion, gm_name: str, raw: str, origin: str) -> None:
    """Keys that only change name (and from PHP's strings to YAML's types); empty = not set."""
    value = _PLAIN[gm_name](raw)
    if value or isinstance(value, bool):  # "", [] and 0 mean "not set"; false is a value
        conv.put(_GM_NAMES[gm_name], value, origin)


def _include(raw: str) -> list[str]:
    items = comma_list(raw)
    return [] if items == ["*"] else items  # include=* means all, as does include=


# How each plain key's ini string becomes a value; the gearmgr key it goes to is from KEYS.
_PLAIN: dict[str, Callable[[str], Any]] = {
    "host": comma_list,
    "worker_dir": comma_list,
    "include": _include,
    "exclude": comma_list,
    "max_runs_per_worker": php_int,
    "auto_update": php_bool,
    "pid_file": str,
    "user": str,
    "log_file": str,
}


def _warn_unmapped(conv: Conversion, gm_name: str, raw: str, origin: str) -> None:
    if gm_name == "prefix":
        if raw:
            conv.warn(
                f"{origin}: not supported; gearmgr calls the function or class named exactly"
                " like the worker file (workers/reverse.py defines reverse); left out"
            )
    elif gm_name == "daemon":
        if php_bool(raw):
            conv.warn(
                f"{origin}: gearmgr does not daemonize; run `gearmgr run` in the foreground"
                " under systemd (etc/gearmgr.service) instead; left out"
            )
    elif gm_name == "dedicated_only":
        conv.warn(
            f"{origin}: GearmanManager reads dedicated_only only in a function section; left out"
        )
    else:
        conv.warn(f"{origin}: unknown to GearmanManager, which ignores it; left out")


def _count(conv: Conversion, raw: str | None, origin: str) -> None:
    conv.do_all = max(php_int(raw or ""), 0)
    if conv.do_all:
        conv.put("count", conv.do_all, origin)


def _dedicated_count(conv: Conversion, raw: str | None, origin: str) -> None:
    """GearmanManager starts no dedicated processes with count > 0 and no dedicated_count."""
    conv.gm_dedicated = max(php_int(raw or ""), 0)
    conv.dedicated = _gm_dedicated(conv, 0, 0)
    if conv.gm_dedicated:
        conv.put("dedicated_count", conv.dedicated, origin)
    elif conv.dedicated == 0:
        note = "GearmanManager starts no dedicated processes with count > 0 and no dedicated_count"
        conv.put("dedicated_count", 0, origin, note)


def _gm_dedicated(conv: Conversion, count: int, dedicated: int) -> int:
    """GearmanManager's dedicated processes for a function whose section has ``count`` and
    ``dedicated_count`` (0 = absent), not dedicated_only (GearmanManager.php load_workers)."""
    min_count = max(count, conv.do_all) if count else max(conv.do_all, 1)
    if dedicated:
        total = conv.do_all + dedicated
    elif conv.gm_dedicated:
        total = conv.do_all + conv.gm_dedicated
    else:
        total = min_count
    return max(min_count, total) - conv.do_all


def _default_note(gm_name: str, raw: str | None, default: str) -> str:
    why = "not set" if raw is None else f"{raw or 'empty'} is ignored"
    return f"GearmanManager's default ({gm_name} {why}): {default}"


def _lifetime(conv: Conversion, raw: str | None, origin: str) -> None:
    """max_worker_lifetime: 3600 s unless set above 0; GearmanManager cannot switch it off."""
    if php_int(raw or "") > 0:
        conv.put("max_lifetime", php_int(raw or ""), origin)
        return
    note = _default_note("max_worker_lifetime", raw, f"{GM_LIFETIME} s")
    conv.put("max_lifetime", GM_LIFETIME, origin, note)
    conv.warn(
        f"{origin}: GearmanManager recycles every process after {GM_LIFETIME} s unless"
        " max_worker_lifetime is above 0, and cannot switch that off; wrote max_lifetime: 1h to"
        " keep that behaviour (0 switches it off in gearmgr)"
    )


def _splay(conv: Conversion, raw: str | None, origin: str) -> None:
    """worker_restart_splay: 600 s unless set above 0."""
    seconds = php_int(raw or "")
    note = None if seconds > 0 else _default_note("worker_restart_splay", raw, f"{GM_SPLAY} s")
    conv.put("lifetime_jitter", seconds if seconds > 0 else GM_SPLAY, origin, note)


def _spawn_splay(conv: Conversion, raw: str | None, origin: str) -> None:
    """worker_initial_spawn_splay is in microseconds; 500000 when empty, 0 or not a number."""
    micros = php_number(raw) if raw else None
    if micros:
        conv.put("spawn_delay", micros / 1_000_000, origin)
        return
    note = _default_note("worker_initial_spawn_splay", raw, f"{GM_SPAWN_SPLAY_US} µs")
    conv.put("spawn_delay", GM_SPAWN_SPLAY_US / 1_000_000, origin, note)


def _shutdown_wait(conv: Conversion, raw: str | None, origin: str) -> None:
    """graceful_shutdown_wait_time: 60 s when absent."""
    if raw is not None:
        conv.put("graceful_timeout", php_int(raw), origin)
        return
    note = _default_note("graceful_shutdown_wait_time", raw, f"{GM_SHUTDOWN_WAIT} s")
    conv.put("graceful_timeout", GM_SHUTDOWN_WAIT, origin, note)


def _timeout(conv: Conversion, raw: str | None, origin: str) -> None:
    if raw is not None and php_int(raw) > 0:
        _put_timeout(conv, conv.top, raw, origin)


def _put_timeout(conv: Conversion, where: dict[str, Entry], raw: str, origin: str) -> None:
    """GearmanManager's timeout is CAN_DO_TIMEOUT; gearmgr's means something else: say so once."""
    seconds = max(php_int(raw), 0)
    conv.put("timeout", seconds, origin, where=where)
    if not seconds:
        return
    wrote = f"wrote timeout: {format_duration(seconds)}"
    if conv.timeout_explained:
        conv.warn(f"{origin}: {wrote} (see the first timeout warning)")
        return
    conv.timeout_explained = True
    conv.warn(
        f"{origin}: GearmanManager hands the timeout to the job server with CAN_DO_TIMEOUT,"
        " where it means seconds or milliseconds depending on the worker library and the gearmand"
        " version, and a job that overruns is re-queued while the first process keeps running it;"
        " gearmgr's timeout is in seconds, kills the process and reports the job failed;"
        f" {wrote}, check it"
    )


def _verbose(conv: Conversion, raw: str | None, origin: str) -> None:
    """verbose 0-2 (or v) -> info, 3-5 (or vv...) -> debug; absent -> info, with a note."""
    if raw is None:
        note = "GearmanManager without verbose logged nothing at all"
        conv.put("log_level", "info", origin, note)
        return
    text = raw.strip().lower()
    if text and set(text) == {"v"}:
        level = len(text) + 1  # GearmanManager's -v is level 2
    elif text in ("true", "on", "yes"):  # parse_ini_file makes these "1"
        level = 1
    elif text.isdigit() or not php_bool(text):
        level = php_int(text)
    else:
        conv.warn(f"{origin}: not a verbosity GearmanManager knows (it used 5); wrote debug")
        level = 5
    conv.put("log_level", "debug" if level >= 3 else "info", origin)


_SPECIAL = {
    "count": _count,
    "dedicated_count": _dedicated_count,
    "max_worker_lifetime": _lifetime,
    "worker_restart_splay": _splay,
    "worker_initial_spawn_splay": _spawn_splay,
    "graceful_shutdown_wait_time": _shutdown_wait,
    "timeout": _timeout,
    "verbose": _verbose,
}


def _warn_relative_paths(conv: Conversion) -> None:
    relative = [] if "worker_dirs" in conv.top else ["worker_dirs (not set: ./workers)"]
    for name in ("worker_dirs", "pid_file", "log_file"):
        entry = conv.top.get(name)
        values = entry.value if entry and isinstance(entry.value, list) else [entry and entry.value]
        if any(v and v != "syslog" and not Path(str(v)).is_absolute() for v in values):
            relative.append(name)
    if relative:
        conv.warn(
            f"relative paths in {', '.join(relative)}: GearmanManager resolved them against its"
            " working directory, gearmgr resolves them against the YAML file's folder; check them"
        )


# --- function sections ---------------------------------------------------------------------------


def convert_function(conv: Conversion, name: str, values: dict[str, str]) -> None:
    """One function section: dedicated_count (GearmanManager's formula), dedicated_only, timeout."""
    out: dict[str, Entry] = {}
    for gm_name, raw in values.items():
        origin = f"[{name}] {gm_name} = {raw}"
        if gm_name == "timeout":
            _put_timeout(conv, out, raw, origin)
        elif gm_name == "priority":
            conv.warn(
                f"{origin}: not supported (it only ordered CAN_DO registrations, which gearmand"
                " no longer honours since it hands jobs out round-robin); left out"
            )
        elif gm_name not in _GM_FUNCTION_KEYS:
            known = _GM_NAMES.get(gm_name)
            hint = f" (gearmgr's {known} can be set per function)" if known in FUNCTION_KEYS else ""
            conv.warn(
                f"{origin}: GearmanManager ignores this in a function section; left out{hint}"
            )
    if php_bool(values.get("dedicated_only", "")):
        _dedicated_only(conv, name, values, out)
    else:
        _dedicated(conv, name, values, out)
    if out:
        conv.functions[name] = {k: out[k] for k in FUNCTION_KEYS if k in out}


def _dedicated_only(
    conv: Conversion, name: str, values: dict[str, str], out: dict[str, Entry]
) -> None:
    """Exactly dedicated_count processes, never registered by the count processes."""
    dedicated = php_int(values.get("dedicated_count", ""))
    out["dedicated_only"] = Entry(True)
    if dedicated > 0:
        out["dedicated_count"] = Entry(dedicated)
    else:
        conv.warn(
            f"[{name}] dedicated_only without dedicated_count: GearmanManager exits at start-up"
            " (silently, status 0) on this; wrote dedicated_count: 1"
        )
        out["dedicated_count"] = Entry(1)
    if "count" in values:
        conv.warn(
            f"[{name}] count = {values['count']}: ignored for a dedicated_only function; left out"
        )


def _dedicated(conv: Conversion, name: str, values: dict[str, str], out: dict[str, Entry]) -> None:
    """dedicated_count such that as many processes serve the function as in GearmanManager."""
    count = max(php_int(values.get("count", "")), 0)
    explicit = max(php_int(values.get("dedicated_count", "")), 0)
    dedicated = _gm_dedicated(conv, count, explicit)
    if dedicated != conv.dedicated or explicit:
        out["dedicated_count"] = Entry(dedicated)
    if not count:
        return
    total = conv.do_all + dedicated
    action = (
        f"wrote dedicated_count: {dedicated} to start the same {total}"
        if dedicated != conv.dedicated
        else f"count and dedicated_count already give the same {total}; left out"
    )
    conv.warn(
        f'[{name}] count = {count}: in GearmanManager this means "at least '
        f'{plural(count, "process")} able to do {name}", counting the '
        f"{plural(conv.do_all, 'count process', 'count processes')}; gearmgr has no per-function"
        f" count: {action}"
    )
