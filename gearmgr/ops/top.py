"""The supervisor's answer to ``gearmgr top``: one request per refresh, answered from a Snapshot.

Rates and percentiles are differences between snapshots of the counters the workers already
keep in the scoreboard (jobs done and failed, the duration histogram): nothing is added to the
worker's job path. Each ``top`` request appends a sample (the per-function counters, at most
one per ``MIN_SPACING``) to a short history, thinned as it ages; jobs/s and failures/s compare
the newest counters with the sample one client interval back, p50 and p95 with the oldest
sample of the last ``WINDOW`` seconds (so a function that runs a job every few seconds still
shows its durations), or, while the history is shorter than ``MIN_WINDOW``, with nothing:
every job since the start (so that the first frame and ``--once`` show durations).

How long a process's job in hand has run is seen the same way, from outside: a process that is
busy with the same count of finished jobs at two requests holds the same job, so the job has run
at least since the first request that saw it busy. Shown to within one refresh.

No psutil here (``status`` reads each worker's USS, ``top`` the RSS the worker keeps in its
slot): one answer costs a scoreboard read and a JSON line.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gearmgr.scoreboard import BUCKETS, FunctionStats
from gearmgr.supervisor.snapshot import SHOWN_STATES, Snapshot

WINDOW = 60.0  # seconds of history the percentiles cover ...
MIN_WINDOW = 10.0  # ... once the history is this long; before, every job since the start
MIN_SPACING = 0.2  # a request sooner than this after the last sample adds none
THINNING = 12  # samples older than A seconds are kept A / THINNING seconds apart
MAX_SAMPLES = 256  # a bound whatever happens (thinning keeps about 110)
MAX_INTERVAL = 3600.0


def quantile(buckets: tuple[int, ...], total: int, q: float) -> float | None:
    """The ``q`` quantile of a duration histogram (counts per bucket of :data:`BUCKETS`, plus
    ``total - sum(buckets)`` jobs longer than the last bound), interpolated linearly inside its
    bucket as Prometheus' ``histogram_quantile`` does. None without jobs; the last bound when
    the quantile lies past it (shown as ``>60s``)."""
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for bound, count in zip(BUCKETS, buckets, strict=True):
        if count and seen + count >= rank:
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return float(BUCKETS[-1])


def delta(new: FunctionStats, old: FunctionStats | None) -> FunctionStats:
    """``new - old``, never negative (a counter that went back counts from zero)."""
    if old is None:
        return new
    if new.done + new.failed < old.done + old.failed:
        return new
    return FunctionStats(
        max(0, new.done - old.done),
        max(0, new.failed - old.failed),
        max(0.0, new.duration_sum - old.duration_sum),
        tuple(max(0, a - b) for a, b in zip(new.buckets, old.buckets, strict=True)),
    )


@dataclass
class Sample:
    at: float  # monotonic
    stats: Mapping[str, FunctionStats]


@dataclass
class TopFeed:
    """What the supervisor keeps between ``top`` requests: a bounded history of counters and,
    per busy process, when it was first seen with its job in hand."""

    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    busy_since: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (jobs, t)

    def answer(self, snap: Snapshot, interval: float, now: float | None = None) -> dict[str, Any]:
        """The ``top`` answer for a client refreshing every ``interval`` seconds."""
        now = time.monotonic() if now is None else now
        interval = min(max(interval, 0.05), MAX_INTERVAL)
        stats = dict(snap.function_stats)
        rate_ref = self._reference(now, now - interval * 0.9)
        window_ref = self._reference(now, now - WINDOW, oldest=True)
        if window_ref is not None and now - window_ref.at < MIN_WINDOW:
            window_ref = None  # too few jobs seen yet: since the start instead
        self._remember(now, stats)
        functions = _functions(snap, stats, now, rate_ref, window_ref)
        processes = self._processes(snap, now, functions)
        return {
            "ok": True,
            "pid": snap.pid,
            "uptime": snap.uptime,
            "config": snap.config_path,
            "stopping": snap.stopping,
            "servers": [{"address": a, "connected": up} for a, up in snap.servers],
            "interval": None if rate_ref is None else now - rate_ref.at,
            "window": None if window_ref is None else now - window_ref.at,
            "functions": functions,
            "processes": processes,
            "waiting": [
                {
                    "key": e.key,
                    "functions": list(e.functions),
                    "state": e.state,
                    "last_exit": e.last_exit,
                    "failures": e.failures,
                    "starts_in": e.starts_in,
                }
                for e in snap.empty_slots
                if not snap.stopping  # a stopping supervisor starts nothing again
            ],
            "restarts": sum(snap.restarts.values()),
        }

    def _reference(self, now: float, before: float, oldest: bool = False) -> Sample | None:
        """The newest sample taken at or before ``before`` (``oldest``: the oldest one taken
        after it); else the oldest sample there is; None when there is none."""
        if not self.samples:
            return None
        if oldest:
            for sample in self.samples:
                if sample.at >= before:
                    return sample
            return self.samples[-1]
        chosen = self.samples[0]
        for sample in self.samples:
            if sample.at > before:
                break
            chosen = sample
        return chosen

    def _remember(self, now: float, stats: dict[str, FunctionStats]) -> None:
        """Keep this sample, and thin the older ones: the older a sample, the farther apart
        the kept ones (a twelfth of its age), so the history stays about a hundred samples
        whatever the clients' intervals, yet holds one close to any interval back."""
        if self.samples and now - self.samples[-1].at < MIN_SPACING:
            return
        self.samples.append(Sample(now, stats))
        kept: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        for sample in self.samples:
            age = now - sample.at
            if age > WINDOW + MAX_INTERVAL:
                continue
            if not kept or sample.at - kept[-1].at >= max(MIN_SPACING, age / THINNING):
                kept.append(sample)
        if kept[-1] is not self.samples[-1]:
            kept.append(self.samples[-1])
        self.samples = kept

    def _processes(
        self, snap: Snapshot, now: float, functions: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        seen: dict[int, tuple[int, float]] = {}
        out = []
        for p in snap.processes:
            job_time = None
            if p.state == "busy":
                jobs, since = self.busy_since.get(p.pid, (-1, now))
                if jobs != p.jobs:
                    since = now  # a new job in hand since the last look
                seen[p.pid] = (p.jobs, since)
                job_time = now - since
            for name in p.functions:
                if name in functions and p.state in SHOWN_STATES:
                    functions[name][p.state] += 1
            out.append(
                {
                    "pid": p.pid,
                    "key": p.key,
                    "functions": list(p.functions),
                    "state": p.state,
                    "job_time": job_time,
                    "rss": p.rss,
                    "jobs": p.jobs,
                    "jobs_failed": p.jobs_failed,
                    "started": p.started,
                    "last_exit": p.last_exit,
                }
            )
        self.busy_since = seen
        return out


def _functions(
    snap: Snapshot,
    stats: Mapping[str, FunctionStats],
    now: float,
    rate_ref: Sample | None,
    window_ref: Sample | None,
) -> dict[str, dict[str, Any]]:
    names = sorted(set(snap.served) | set(snap.pools))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        st = stats.get(name, FunctionStats())
        row: dict[str, Any] = {state: 0 for state in SHOWN_STATES}
        row.update(jobs_done=st.done, jobs_failed=st.failed, broken=name in snap.broken)
        if rate_ref is not None and now > rate_ref.at:
            d = delta(st, rate_ref.stats.get(name))
            span = now - rate_ref.at
            row.update(jobs_per_s=(d.done + d.failed) / span, failures_per_s=d.failed / span)
        else:
            row.update(jobs_per_s=None, failures_per_s=None)
        d = delta(st, window_ref.stats.get(name)) if window_ref is not None else st
        finished = d.done + d.failed
        row.update(
            p50=quantile(d.buckets, finished, 0.5),
            p95=quantile(d.buckets, finished, 0.95),
        )
        pool = snap.pools.get(name)
        if pool is not None:  # queued, running, target, min, max, paused: as status shows them
            row.update(asdict(pool))
        out[name] = row
    return out
