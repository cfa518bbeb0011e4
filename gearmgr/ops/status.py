"""The supervisor's status: a Snapshot (supervisor/snapshot.py) shown as JSON or a table."""

from __future__ import annotations

import time
from typing import Any

from gearmgr.scoreboard import FunctionStats
from gearmgr.supervisor.plan import SHARED
from gearmgr.supervisor.snapshot import Snapshot
from gearmgr.units import format_duration
from gearmgr.words import plural

#: Longest time one ``status`` request spends reading worker processes' USS (psutil reads
#: /proc/PID/smaps_rollup, a fraction of a millisecond for a worker), so that the loop it runs
#: in is never held up: the stalest figures are read first, the others shown from the last read.
USS_BUDGET = 0.01
_uss_cache: dict[int, tuple[float, int | None]] = {}  # pid -> (when read, USS)


def unique_memory(pids: list[int], budget: float = USS_BUDGET) -> dict[int, int | None]:
    """USS of each process (bytes of memory only it holds: what stopping it would free), read
    with psutil within ``budget`` seconds, stalest first; a figure not read this time is the
    last one read (None if never)."""
    import psutil

    for gone in set(_uss_cache) - set(pids):
        del _uss_cache[gone]
    deadline = time.monotonic() + budget
    for pid in sorted(pids, key=lambda p: _uss_cache.get(p, (0.0, None))[0]):
        now = time.monotonic()
        if now > deadline:
            break
        try:
            _uss_cache[pid] = (now, int(psutil.Process(pid).memory_full_info().uss))
        except (psutil.Error, OSError, AttributeError):
            _uss_cache[pid] = (now, None)
    return {pid: _uss_cache.get(pid, (0.0, None))[1] for pid in pids}


def processes(snap: Snapshot, memory: bool = False) -> list[dict[str, Any]]:
    """Every live worker process, as ``status`` shows it; with ``memory``, its USS too."""
    out: list[dict[str, Any]] = [
        {
            "pid": p.pid,
            "key": p.key,
            "functions": list(p.functions),
            "state": p.state,
            "jobs": p.jobs,
            "jobs_failed": p.jobs_failed,
            "rss": p.rss,
            "started": p.started,
            "servers_connected": p.servers_connected,
            "in_hand": p.in_hand,
            "places": p.places,
        }
        for p in snap.processes
    ]
    if memory:
        uss = unique_memory([p.pid for p in snap.processes])
        for proc in out:
            proc["uss"] = uss.get(proc["pid"])
    return out


def build_status(snap: Snapshot) -> dict[str, Any]:
    """The object of ``gearmgr status --json`` (SPEC.md), plus restarts by reason."""
    functions: dict[str, dict[str, Any]] = {}
    stats = snap.function_stats
    served = set(snap.served)
    # Restarts are kept by group: a function's name, or SHARED for the count processes. A
    # function that is no longer served keeps its line (and its counters): the history stays.
    names = set(stats) | {group for group, _ in snap.restarts if group != SHARED}
    for name in sorted(names):
        st = stats.get(name, FunctionStats())
        functions[name] = {
            "processes": 0,
            "jobs_done": st.done,
            "jobs_failed": st.failed,
            "restarts": {},
            "removed": name not in served,
        }
    restarts: dict[str, dict[str, int]] = {}
    for (group, reason), n in sorted(snap.restarts.items()):
        restarts.setdefault(group, {})[reason] = n
        if group in functions:
            functions[group]["restarts"] = restarts[group]
    for name, pool in snap.pools.items():
        if name in functions:
            functions[name].update(
                queued=pool.queued,
                running=pool.running,
                target=pool.target,
                min=pool.min,
                max=pool.max,
                paused=pool.paused,
            )
    failures = snap.failures
    for name in functions:
        functions[name]["deaths"] = failures.deaths.get(name, 0)
        functions[name]["quarantined"] = failures.quarantined.get(name, 0)
    procs = processes(snap, memory=True)
    for proc in procs:
        for name in proc["functions"]:
            if name in functions:
                functions[name]["processes"] += 1
    # As the supervisor's last check saw them (every few seconds): asking here would block the
    # loop on a server that does not answer.
    servers = [{"address": address, "connected": up} for address, up in snap.servers]
    return {
        "pid": snap.pid,
        "uptime": snap.uptime,
        "config": snap.config_path,
        "servers": servers,
        "processes": procs,
        "functions": functions,
        "restarts": restarts,
        "stopping": snap.stopping,
        "failed_jobs": {
            "database": failures.database,
            "recorded": dict(failures.recorded),
            "deaths": sum(failures.deaths.values()),
            "quarantined": sum(failures.quarantined.values()),
            "in_quarantine": failures.in_quarantine,
        },
    }


def summary(snap: Snapshot) -> str:
    """One line for systemd's STATUS=."""
    busy = sum(1 for p in snap.processes if p.state == "busy")
    done = sum(st.done + st.failed for st in snap.function_stats.values())
    text = f"{plural(len(snap.processes), 'process')} ({busy} busy), {plural(done, 'job')} done"
    if snap.waiting:
        text += f", {snap.waiting} waiting to start"
    if snap.broken:
        text += f", broken: {','.join(snap.broken)}"
    return text


def format_status(status: dict[str, Any]) -> str:
    """The human table of ``gearmgr status``."""
    lines = [
        f"supervisor {status['pid']}, up {format_duration(round(status['uptime']))}, "
        f"{plural(len(status['processes']), 'process')}",
    ]
    servers = ", ".join(
        f"{s['address']} ({'up' if s['connected'] else 'DOWN'})" for s in status["servers"]
    )
    lines.append(f"servers: {servers}")
    lines.append("")
    states = [_state(p) for p in status["processes"]]
    width = max([9, *(len(s) for s in states)])
    lines.append(
        f"{'PID':>7}  {'STATE':<{width}} {'JOBS':>7} {'RSS':>9} {'USS':>9} {'AGE':>8}  FUNCTIONS"
    )
    now = time.time()
    for p, state in zip(status["processes"], states, strict=True):
        age = format_duration(round(now - p["started"])) if p["started"] else "-"
        uss = _mib(p["uss"]) if p.get("uss") is not None else "-"
        lines.append(
            f"{p['pid']:>7}  {state:<{width}} {p['jobs']:>7} {_mib(p['rss']):>9} {uss:>9} "
            f"{age:>8}  {','.join(p['functions'])}"
        )
    lines.append("")
    lines.append(
        f"{'FUNCTION':<24} {'PROCS':>5} {'DONE':>9} {'FAILED':>7} {'QUEUED':>7} {'RUNNING':>7}"
        f" {'POOL':>11}  RESTARTS"
    )
    for name, f in sorted(status["functions"].items()):
        restarts = ", ".join(f"{r}={n}" for r, n in sorted(f.get("restarts", {}).items())) or "-"
        label = f"{name} (removed)" if f.get("removed") else name
        lines.append(
            f"{label:<24} {f['processes']:>5} {f['jobs_done']:>9} {f['jobs_failed']:>7}"
            f" {_count(f.get('queued')):>7} {_count(f.get('running')):>7} {_pool(f):>11}"
            f"  {restarts}"
        )
    shared = status.get("restarts", {}).get(SHARED)
    if shared:  # the count processes, which serve every function: their own line
        restarts = ", ".join(f"{r}={n}" for r, n in sorted(shared.items()))
        lines.append(f"{'(shared: ' + SHARED + ')':<24} {'':>5} {'':>9} {'':>7}  {restarts}")
    failed = status.get("failed_jobs")
    if failed:
        lines += ["", _failed_line(failed)]
    return "\n".join(lines)


def _failed_line(failed: dict[str, Any]) -> str:
    """``failed jobs: 3 recorded (exception 2, timeout 1); 4 deaths in jobs, 1 quarantined``."""
    recorded = failed.get("recorded", {})
    kinds = ", ".join(f"{k} {n}" for k, n in recorded.items() if n and k != "lost")
    total = sum(n for k, n in recorded.items() if k != "lost")
    text = f"failed jobs: {total} recorded" + (f" ({kinds})" if kinds else "")
    if recorded.get("lost"):
        text += f", {recorded['lost']} NOT recorded (see the log)"
    text += f"; {plural(failed.get('deaths', 0), 'death')} during jobs"
    text += f", {failed.get('quarantined', 0)} quarantined"
    if not failed.get("database"):
        return text + " (recording is off: failed_jobs: none)"
    return text + (" (`gearmgr failed` lists them)" if total else "")


def _state(p: dict[str, Any]) -> str:
    """``busy 17/64``: a process with places shows its jobs in hand."""
    places = p.get("places", 1)
    return f"{p['state']} {p.get('in_hand', 0)}/{places}" if places > 1 else p["state"]


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _pool(f: dict[str, Any]) -> str:
    """``2 (1..8)``: the dedicated pool's target and bounds; ``paused``."""
    if f.get("paused"):
        return "paused"
    if "target" not in f:
        return "-"
    bounds = f"{f['min']}" if f["min"] == f["max"] else f"{f['min']}..{f['max']}"
    return f"{f['target']} ({bounds})"


def _mib(size: int) -> str:
    """Memory in the table: one unit for every row, so the column reads at a glance."""
    return f"{size / 1048576:.1f}MiB"
