"""The supervisor's status: built from the slots and the scoreboard, shown as JSON or a table."""

from __future__ import annotations

import time
from typing import Any

from gearmgr.units import format_duration, format_size


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
    return "\n".join(lines)
