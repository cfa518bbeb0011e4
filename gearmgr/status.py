"""The supervisor's status: built from the slots and the scoreboard, shown as JSON or a table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gearmgr.scoreboard import FunctionStats
from gearmgr.slot import RUNNING, STOPPING
from gearmgr.units import format_duration, format_size

if TYPE_CHECKING:
    from gearmgr.supervisor import Supervisor


def function_stats(sup: Supervisor) -> dict[str, FunctionStats]:
    """Job counters per function: processes that exited plus the running ones."""
    out = {name: sup.totals.get(name, FunctionStats()) for name in sup.catalog.files}
    for slot in sup.children():
        order = sup.loaded.get(slot.index, [])
        stats = sup.scoreboard.read(slot.index, len(order)).function_stats
        for name, st in zip(order, stats, strict=False):
            out[name] = out.get(name, FunctionStats()) + st
    return out


def processes(sup: Supervisor) -> list[dict[str, Any]]:
    """Every live worker process, as ``status`` shows it."""
    now_wall, now = time.time(), time.monotonic()
    out = []
    for slot in sup.children():
        order = sup.loaded.get(slot.index, [])
        view = sup.scoreboard.read(slot.index)
        state = "stopping" if slot.state == STOPPING else view.state
        if state not in ("idle", "busy", "stopping"):
            state = "idle"  # starting: forked, not yet registered
        out.append(
            {
                "pid": slot.pid,
                "key": slot.key,
                "functions": order or list(slot.spec.functions),
                "state": state,
                "jobs": view.jobs_done,
                "jobs_failed": view.jobs_failed,
                "rss": view.rss,
                "started": now_wall - (now - slot.started_at),
                "servers_connected": view.servers_connected,
            }
        )
    return out


def build_status(sup: Supervisor) -> dict[str, Any]:
    """The object of ``gearmgr status --json`` (SPEC.md), plus restarts by reason."""
    functions: dict[str, dict[str, Any]] = {}
    for name, st in sorted(function_stats(sup).items()):
        functions[name] = {
            "processes": 0,
            "jobs_done": st.done,
            "jobs_failed": st.failed,
            "restarts": {},
        }
    restarts: dict[str, dict[str, int]] = {}
    for (group, reason), n in sorted(sup.restarts.items()):
        restarts.setdefault(group, {})[reason] = n
        if group in functions:
            functions[group]["restarts"] = restarts[group]
    procs = processes(sup)
    for proc in procs:
        for name in proc["functions"]:
            if name in functions:
                functions[name]["processes"] += 1
    # As the supervisor's last check saw them (every few seconds): asking here would block the
    # loop on a server that does not answer.
    servers = [
        {"address": address, "connected": sup.servers_up.get(address, False)}
        for address in sup.config.servers
    ]
    return {
        "pid": sup.pid,
        "uptime": time.time() - sup.started_at,
        "config": str(sup.config.path) if sup.config.path else None,
        "servers": servers,
        "processes": procs,
        "functions": functions,
        "restarts": restarts,
        "stopping": sup.stopping,
    }


def summary(sup: Supervisor) -> str:
    """One line for systemd's STATUS=."""
    procs = processes(sup)
    busy = sum(1 for p in procs if p["state"] == "busy")
    done = sum(st.done + st.failed for st in function_stats(sup).values())
    waiting = sum(1 for s in sup.slots if s.state != RUNNING)
    text = f"{len(procs)} processes ({busy} busy), {done} jobs done"
    if waiting:
        text += f", {waiting} waiting to start"
    if sup.catalog.broken:
        text += f", broken: {','.join(sorted(sup.catalog.broken))}"
    return text


def format_status(status: dict[str, Any]) -> str:
    """The human table of ``gearmgr status``."""
    lines = [
        f"supervisor {status['pid']}, up {format_duration(round(status['uptime']))}, "
        f"{len(status['processes'])} processes",
    ]
    servers = ", ".join(
        f"{s['address']} ({'up' if s['connected'] else 'DOWN'})" for s in status["servers"]
    )
    lines.append(f"servers: {servers}")
    lines.append("")
    lines.append(f"{'PID':>7}  {'STATE':<9} {'JOBS':>7} {'RSS':>9} {'AGE':>8}  FUNCTIONS")
    now = time.time()
    for p in status["processes"]:
        age = format_duration(round(now - p["started"])) if p["started"] else "-"
        lines.append(
            f"{p['pid']:>7}  {p['state']:<9} {p['jobs']:>7} {format_size(p['rss']):>9} "
            f"{age:>8}  {','.join(p['functions'])}"
        )
    lines.append("")
    lines.append(f"{'FUNCTION':<24} {'PROCS':>5} {'DONE':>9} {'FAILED':>7}  RESTARTS")
    for name, f in sorted(status["functions"].items()):
        restarts = ", ".join(f"{r}={n}" for r, n in sorted(f.get("restarts", {}).items())) or "-"
        lines.append(
            f"{name:<24} {f['processes']:>5} {f['jobs_done']:>9} {f['jobs_failed']:>7}  {restarts}"
        )
    for group, reasons in sorted(status.get("restarts", {}).items()):
        if group not in status["functions"]:  # the shared (count) processes
            restarts = ", ".join(f"{r}={n}" for r, n in sorted(reasons.items()))
            lines.append(f"{'(shared: ' + group + ')':<24} {'':>5} {'':>9} {'':>7}  {restarts}")
    return "\n".join(lines)
