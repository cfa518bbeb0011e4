"""One frame of ``gearmgr top``, drawn from the supervisor's ``top`` answer (ops/top.py): pure,
no terminal. Lines of exactly ``width`` terminal cells (``cli/cells.py``: a CJK character or
an emoji in a function name takes two, a combining mark none), each with a style the curses
side maps to attributes (``cli/top.py``), and the same lines as plain text for ``--once``.

The layout fits 80x24 and uses more room when there is some: the function table takes what it
needs up to half the rows (scrolled to keep the selection in view), the processes the rest;
from 120 columns both tables gain columns (total jobs and failures; age, failures and slot of
each process). ASCII only apart from the names, so that a dumb terminal shows it too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gearmgr.cli import cells
from gearmgr.scoreboard import BUCKETS
from gearmgr.units import format_duration

SORTS = ("name", "load", "rate", "memory")
WIDE = 120  # from this many columns the tables show more
#: Styles of a line (the curses side maps them to attributes).
PLAIN, TITLE, HEADER, SELECTED, MARKED, ALERT, STATUS = range(7)

KEYS_HINT = "up/down select  p pause/resume  +/- floor  r replace  s sort  ? help  q quit"
HELP = (
    "gearmgr top: keys",
    "",
    "  up, down   select a function (also k, j; Home, End)",
    "  p          pause the selected function, or resume it (gearmgr pause/resume)",
    "  +  -       raise or lower its floor by one (gearmgr scale); a fixed pool",
    "             (MIN = MAX) grows or shrinks as a whole",
    "  r          replace its processes one by one (gearmgr restart)",
    "  s          sort: name, load (queued, running, busy), rate (jobs/s), memory",
    "  ?          this help; any key closes it",
    "  q          quit",
    "",
    "Functions: B/I/S its processes busy/idle/stopping; QUEUED and RUN at the job",
    "servers; POOL its own processes planned now (floor..ceiling); JOBS/S, FAIL/S",
    "over the last refresh; P50, P95 of the job durations over the last minute.",
    "Processes: JOB how long the job in hand has run (to within one refresh);",
    "RESTART why the slot's previous process went. A row without a PID is a slot",
    "waiting to start (backoff: after quick deaths; JOB says when it starts).",
)


@dataclass
class View:
    """What the frame shows besides the answer: the selection, the sort, the status line."""

    selected: str | None = None
    sort: str = "name"
    message: str = ""
    alert: bool = False  # the message reports a failure
    help: bool = False


Line = tuple[str, int]


def order(answer: dict[str, Any], sort: str) -> list[str]:
    """The functions in the order the table shows them."""
    functions: dict[str, dict[str, Any]] = answer.get("functions", {})
    names = sorted(functions)
    if sort == "load":
        return sorted(names, key=lambda n: -_load(functions[n]))
    if sort == "rate":
        return sorted(names, key=lambda n: -(functions[n].get("jobs_per_s") or 0.0))
    if sort == "memory":
        rss: dict[str, int] = {}
        for p in answer.get("processes", []):
            for name in p["functions"]:
                rss[name] = rss.get(name, 0) + p["rss"]
        return sorted(names, key=lambda n: -rss.get(n, 0))
    return names


def _load(f: dict[str, Any]) -> int:
    return (f.get("queued") or 0) + (f.get("running") or 0) + f.get("busy", 0)


def render(answer: dict[str, Any], width: int, height: int, view: View) -> list[Line]:
    """Exactly ``height`` lines of exactly ``width`` cells (fewer for a tiny terminal)."""
    width, height = max(width, 20), max(height, 3)
    lines = header(answer, width, view)
    body = height - len(lines) - 1
    if view.help:
        lines += [(_fit(t, width), PLAIN) for t in HELP[:body]]
    else:
        lines += tables(answer, width, body, view)
    while len(lines) < height - 1:
        lines.append((" " * width, PLAIN))
    message = view.message or KEYS_HINT
    lines.append((_fit(message, width), ALERT if view.alert else STATUS))
    return [(_fit(text, width), style) for text, style in lines[:height]]


def plain(answer: dict[str, Any], width: int = 80) -> str:
    """The whole frame as text (``--once``): every function and process, no status line."""
    view = View()
    functions = answer.get("functions", {})
    rows = len(functions) + len(answer.get("processes", [])) + len(answer.get("waiting", []))
    lines = header(answer, width, view) + tables(answer, width, rows + 4, view, everything=True)
    return "\n".join(text.rstrip() for text, _ in lines)


def header(answer: dict[str, Any], width: int, view: View) -> list[Line]:
    servers = answer.get("servers", [])
    down = [s["address"] for s in servers if not s["connected"]]
    up = len(servers) - len(down)
    shown = f"servers {up} up" + (f", DOWN: {' '.join(down)}" if down else "")
    stopping = "  STOPPING" if answer.get("stopping") else ""
    clock = time.strftime("%H:%M:%S")
    uptime = format_duration(round(answer.get("uptime", 0)))
    title = f"gearmgr top  pid {answer.get('pid')}  up {uptime}  {shown}{stopping}"
    title = _fit(title, width - len(clock) - 1) + " " + clock
    procs = answer.get("processes", [])
    states = {s: sum(1 for p in procs if p["state"] == s) for s in ("busy", "idle", "stopping")}
    functions = answer.get("functions", {}).values()
    queued = sum(f.get("queued") or 0 for f in functions)
    rate = _sum(f.get("jobs_per_s") for f in functions)
    fails = _sum(f.get("failures_per_s") for f in functions)
    waiting = len(answer.get("waiting", []))
    totals = (
        f"procs {len(procs)}: {states['busy']} busy {states['idle']} idle"
        + (f" {states['stopping']} stopping" if states["stopping"] else "")
        + (f" {waiting} waiting" if waiting else "")
        + f"  queued {queued}  jobs/s {_rate(rate)}  fail/s {_rate(fails)}"
        + f"  restarts {answer.get('restarts', 0)}"
    )
    if width >= 100:
        window = answer.get("window")
        over = "since start" if window is None else f"last {format_duration(round(window))}"
        totals += f"  p50/p95 {over}  sort {view.sort}"
    return [
        (_fit(title, width), ALERT if down or stopping else TITLE),
        (_fit(totals, width), PLAIN),
    ]


def tables(
    answer: dict[str, Any], width: int, rows: int, view: View, everything: bool = False
) -> list[Line]:
    """The function table, a blank line, the process table: at most ``rows`` lines."""
    functions = answer.get("functions", {})
    names = order(answer, view.sort)
    procs = _process_rows(answer, view)
    wide = width >= WIDE
    if everything:
        fn_rows = len(names)
    else:
        room = max(rows - 4, 1)  # two headers, a blank line, one process at least
        fn_rows = min(len(names), max(min(3, room), room - len(procs), room // 2))
    out: list[Line] = [(_fit(_function_head(width, wide), width), HEADER)]
    start = 0
    if view.selected in names and names.index(view.selected) >= fn_rows:
        start = names.index(view.selected) - fn_rows + 1
    for name in names[start : start + fn_rows]:
        selected = name == view.selected
        text = _function_row(name, functions[name], width, wide, selected)
        f = functions[name]
        style = SELECTED if selected else ALERT if f.get("broken") else PLAIN
        out.append((text, style))
    left = rows - len(out) - 2
    if left < 1 and not everything:
        return out[:rows]
    out.append((" " * width, PLAIN))
    out.append((_fit(_process_head(width, wide), width), HEADER))
    shown = procs if everything else procs[: left if len(procs) <= left else left - 1]
    for row, style in shown:
        out.append((_fit(row(width, wide), width), style))
    if len(shown) < len(procs):
        out.append(
            (
                _fit(f"  ... {len(procs) - len(shown)} more (a taller terminal shows them)", width),
                PLAIN,
            )
        )
    return out


# -- the function table -----------------------------------------------------------------------


def _function_cols(width: int, wide: bool) -> int:
    fixed = 63 + (18 if wide else 0)
    return max(8, min(width - fixed, 40))


def _function_head(width: int, wide: bool) -> str:
    w = _function_cols(width, wide)
    extra = f" {'DONE':>9} {'FAILED':>7}" if wide else ""
    return (
        f"  {'FUNCTION':<{w}} {'B/I/S':>8} {'QUEUED':>6} {'RUN':>4} {'POOL':<11}"
        f" {'JOBS/S':>6} {'FAIL/S':>6} {'P50':>6} {'P95':>6}{extra}"
    )


def _function_row(name: str, f: dict[str, Any], width: int, wide: bool, selected: bool) -> str:
    w = _function_cols(width, wide)
    procs = f"{f.get('busy', 0)}/{f.get('idle', 0)}/{f.get('stopping', 0)}"
    label = name + (" (broken)" if f.get("broken") else "")
    extra = f" {f.get('jobs_done', 0):>9} {f.get('jobs_failed', 0):>7}" if wide else ""
    return (
        f"{'>' if selected else ' '} {cells.cell(label, w)} {procs:>8} {_count(f.get('queued')):>6}"
        f" {_count(f.get('running')):>4} {_pool(f):<11} {_rate(f.get('jobs_per_s')):>6}"
        f" {_rate(f.get('failures_per_s')):>6} {_percentile(f.get('p50')):>6}"
        f" {_percentile(f.get('p95')):>6}{extra}"
    )


def _pool(f: dict[str, Any]) -> str:
    """As ``gearmgr status`` shows it: ``2 (1..8)``, the target and the bounds; ``paused``."""
    if "target" not in f:
        return "-"
    bounds = f"{f['min']}" if f["min"] == f["max"] else f"{f['min']}..{f['max']}"
    return "paused" if f.get("paused") else f"{f['target']} ({bounds})"


# -- the process table ------------------------------------------------------------------------


def _process_cols(width: int, wide: bool) -> int:
    fixed = 52 + (30 if wide else 0)
    return max(8, width - fixed)


def _process_head(width: int, wide: bool) -> str:
    w = _process_cols(width, wide)
    extra = f" {'FAILED':>7} {'AGE':>8} {'SLOT':<12}" if wide else ""
    return (
        f" {'PID':>7} {cells.cell('FUNCTIONS', w)} {'STATE':<8} {'JOB':>6} {'RSS':>6}"
        f" {'JOBS':>7} {'RESTART':<11}{extra}"
    )


Row = Callable[[int, bool], str]


def _process_rows(answer: dict[str, Any], view: View) -> list[tuple[Row, int]]:
    """Processes (those of the selected function first), then slots waiting to restart."""
    procs = list(answer.get("processes", []))
    key: dict[str, Callable[[dict[str, Any]], Any]] = {
        "name": lambda p: (p["key"], p["pid"]),
        "load": lambda p: (p["state"] != "busy", -(p.get("job_time") or 0.0), p["key"]),
        "rate": lambda p: (-p["jobs"], p["key"]),
        "memory": lambda p: (-p["rss"], p["key"]),
    }
    procs.sort(key=key.get(view.sort, key["name"]))
    procs.sort(key=lambda p: view.selected not in p["functions"])
    now = time.time()
    rows: list[tuple[Row, int]] = []
    for p in procs:
        style = MARKED if view.selected in p["functions"] else PLAIN
        rows.append((_process_row(p, now), style))
    for slot in answer.get("waiting", []):
        rows.append((_waiting_row(slot), ALERT if slot["state"] == "backoff" else PLAIN))
    return rows


def _process_row(p: dict[str, Any], now: float) -> Row:
    def row(width: int, wide: bool) -> str:
        w = _process_cols(width, wide)
        job = _job_time(p.get("job_time")) if p["state"] == "busy" else "-"
        restart = p.get("last_exit") or "-"
        extra = ""
        if wide:
            age = format_duration(max(0, round(now - p["started"]))) if p.get("started") else "-"
            extra = f" {p.get('jobs_failed', 0):>7} {age:>8} {cells.cell(p['key'], 12)}"
        return (
            f" {p['pid']:>7} {cells.cell(','.join(p['functions']), w)} {p['state']:<8}"
            f" {job:>6} {_size(p['rss']):>6} {p['jobs']:>7} {cells.cell(restart, 11)}{extra}"
        )

    return row


def _waiting_row(slot: dict[str, Any]) -> Row:
    def row(width: int, wide: bool) -> str:
        w = _process_cols(width, wide)
        wait = math.ceil(slot["starts_in"])
        when = ("now" if wait <= 0 else f"in {wait}s") if wait < 60 else f"in {wait // 60}m"
        restart = slot.get("last_exit") or "-"
        if slot.get("failures", 0) > 1:
            restart += f" x{slot['failures']}"
        extra = f" {'':>7} {'':>8} {cells.cell(slot['key'], 12)}" if wide else ""
        return (
            f" {'-':>7} {cells.cell(','.join(slot['functions']), w)} {slot['state']:<8}"
            f" {cells.clip(when, 6):>6} {'-':>6} {'-':>7} {cells.cell(restart, 11)}{extra}"
        )

    return row


# -- numbers as the columns show them ---------------------------------------------------------


def _fit(text: str, width: int = 0) -> str:
    """``text`` cut or padded to exactly ``width`` terminal cells."""
    return cells.fit(text, width)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _sum(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 9999.5:
        return f"{value / 1000:.0f}k"
    if value >= 99.95:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    return format_duration(round(seconds))


def _percentile(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= BUCKETS[-1]:
        return f">{BUCKETS[-1]:.0f}s"
    return _duration(value)


def _job_time(seconds: float | None) -> str:
    if seconds is None or seconds < 1:
        return "<1s"
    return format_duration(round(seconds)) if seconds >= 10 else f"{seconds:.0f}s"


def _size(n: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)
