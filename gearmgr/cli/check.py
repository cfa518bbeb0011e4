"""``gearmgr check``: validate the config, import every worker file in a throwaway subprocess,
print the process plan."""

from __future__ import annotations

from typing import TextIO

from gearmgr.config import Config
from gearmgr.discovery import discover, validate
from gearmgr.errors import ExitCode
from gearmgr.supervisor.plan import MAX_PROCESSES, make_plan
from gearmgr.units import format_duration, format_size


def _limits(spec_limits: object) -> str:
    parts = []
    lim = spec_limits
    if lim.max_jobs:  # type: ignore[attr-defined]
        parts.append(f"max_jobs={lim.max_jobs}")  # type: ignore[attr-defined]
    if lim.max_lifetime:  # type: ignore[attr-defined]
        text = f"max_lifetime={format_duration(lim.max_lifetime)}"  # type: ignore[attr-defined]
        if lim.lifetime_jitter:  # type: ignore[attr-defined]
            text += f"+{format_duration(lim.lifetime_jitter)}"  # type: ignore[attr-defined]
        parts.append(text)
    if lim.max_memory:  # type: ignore[attr-defined]
        parts.append(f"max_memory={format_size(lim.max_memory)}")  # type: ignore[attr-defined]
    parts.append(f"graceful_timeout={format_duration(lim.graceful_timeout)}")  # type: ignore[attr-defined]
    return " ".join(parts)


def check(config: Config, out: TextIO) -> int:
    found = discover(config.worker_dirs, config.include, config.exclude)
    print(f"config: {config.path or '(defaults)'}: OK", file=out)
    print(
        f"servers: {', '.join(config.servers)}" + (" (embedded)" if config.embedded_server else ""),
        file=out,
    )
    for problem in (*found.problems, *config.unused_function_settings(found.files)):
        print(f"warning: {problem}", file=out)
    results = validate(
        found.files, concurrency={n: config.function(n).concurrency for n in found.files}
    )
    broken = {n: e for n, e in results.items() if e}
    print(f"functions: {len(found.files)} ({len(broken)} broken)", file=out)
    for name, path in sorted(found.files.items()):
        err = broken.get(name)
        print(f"  {name:<24} {path}" + (f"\n    ERROR {err}" if err else ""), file=out)
    plan = make_plan(config, found.files)
    print(f"processes: {len(plan)}", file=out)
    if len(plan) > MAX_PROCESSES:
        print(f"ERROR the plan has more than {MAX_PROCESSES} processes", file=out)
        return ExitCode.USAGE
    for name in sorted(found.files):
        settings = config.function(name)
        if config.elastic(name):
            print(
                f"  elastic {name}: {settings.dedicated_count}..{settings.max_processes} processes"
                f" (backlog_per_process {settings.backlog_per_process},"
                f" scale_down_delay {format_duration(settings.scale_down_delay)})",
                file=out,
            )
    for spec in plan:
        timeouts = ", ".join(f"{n}={format_duration(t)}" for n, t in spec.timeouts if t)
        line = f"  {spec.key:<20} {','.join(spec.functions)}  [places={spec.concurrency}"
        line += f" {_limits(spec.limits)}"
        line += f" timeout: {timeouts}]" if timeouts else "]"
        print(line, file=out)
    return ExitCode.FATAL if broken else ExitCode.OK
