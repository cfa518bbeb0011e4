"""Prometheus metrics (``metrics: HOST:PORT``), served from the supervisor's own loop.

prometheus_client's ``start_http_server`` runs a thread, and a supervisor that forks must not
have threads (a lock held by another thread at fork stays held in the child). So the metrics
socket is one more non-blocking listener in the supervisor's selector, answered with
``generate_latest`` over a collector that reads the scoreboard at scrape time. Workers count
jobs and durations in their scoreboard slots; the supervisor adds the counters of processes
that have exited, so the totals survive recycling.

A page is rendered at most once every :data:`RENDER_EVERY` seconds: scrapes within that time
get the same page, so a client that scrapes in a loop (or many at once) costs the supervisor
one rendering a quarter second, not one per request.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from gearmgr.ops.listener import Listener, Reply
from gearmgr.scoreboard import BUCKETS
from gearmgr.supervisor.snapshot import Snapshot
from gearmgr.units import parse_address

log = logging.getLogger("gearmgr.metrics")

RENDER_EVERY = 0.25  # seconds: the longest a page is served again instead of rendered anew


class SupervisorCollector:
    """Reads a snapshot of the supervisor when Prometheus scrapes."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[object]:
        snap = self.snapshot()
        jobs = CounterMetricFamily(
            "gearmgr_jobs", "Jobs run, by function and outcome", labels=["function", "outcome"]
        )
        durations = HistogramMetricFamily(
            "gearmgr_job_duration_seconds", "Time spent running jobs", labels=["function"]
        )
        for name, st in sorted(snap.function_stats.items()):
            jobs.add_metric([name, "complete"], st.done)
            jobs.add_metric([name, "fail"], st.failed)
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKETS, st.buckets, strict=True):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", st.done + st.failed))
            durations.add_metric([name], buckets, st.duration_sum)
        yield jobs
        yield durations
        restarts = CounterMetricFamily(
            "gearmgr_worker_restarts",
            "Worker processes replaced, by function (or 'all' for shared processes) and reason",
            labels=["function", "reason"],
        )
        for (group, reason), n in sorted(snap.restarts.items()):
            restarts.add_metric([group, reason], n)
        yield restarts
        workers = GaugeMetricFamily(
            "gearmgr_workers",
            "Worker processes by function and state",
            labels=["function", "state"],
        )
        rss = GaugeMetricFamily(
            "gearmgr_worker_rss_bytes", "Resident memory of each worker process", labels=["slot"]
        )
        counts: dict[tuple[str, str], int] = {}
        for name in snap.served:
            for state in ("idle", "busy", "stopping"):
                counts[(name, state)] = 0
        seen: set[str] = set()
        for proc in snap.processes:
            for name in proc.functions:
                key = (name, proc.state)
                counts[key] = counts.get(key, 0) + 1
            if proc.key not in seen:  # one series per slot, also while a replacement starts
                seen.add(proc.key)
                rss.add_metric([proc.key], proc.rss)
        for (name, state), n in sorted(counts.items()):
            workers.add_metric([name, state], n)
        yield workers
        yield rss
        yield from _places(snap)
        queued = GaugeMetricFamily(
            "gearmgr_function_queued",
            "Jobs waiting at all job servers, by function",
            labels=["function"],
        )
        target = GaugeMetricFamily(
            "gearmgr_pool_target",
            "Dedicated processes each function's pool aims for",
            labels=["function"],
        )
        paused = GaugeMetricFamily(
            "gearmgr_function_paused",
            "1 while the function is paused (gearmgr pause), else 0",
            labels=["function"],
        )
        for name, pool in sorted(snap.pools.items()):
            if pool.queued is not None:
                queued.add_metric([name], pool.queued)
            target.add_metric([name], pool.target)
            paused.add_metric([name], 1 if pool.paused else 0)
        yield queued
        yield target
        yield paused
        yield from _failure_metrics(snap)
        yield GaugeMetricFamily(
            "gearmgr_uptime_seconds",
            "Seconds since the supervisor started",
            value=snap.uptime,
        )


def _failure_metrics(snap: Snapshot) -> Iterator[object]:
    failures = snap.failures
    quarantined = CounterMetricFamily(
        "gearmgr_jobs_quarantined",
        "Jobs quarantined after killing poison_after worker processes, by function",
        labels=["function"],
    )
    deaths = CounterMetricFamily(
        "gearmgr_job_deaths",
        "Worker processes that died running a job, by the job's function",
        labels=["function"],
    )
    for name in sorted(set(snap.function_stats) | set(failures.deaths)):
        quarantined.add_metric([name], failures.quarantined.get(name, 0))
        deaths.add_metric([name], failures.deaths.get(name, 0))
    yield quarantined
    yield deaths
    recorded = CounterMetricFamily(
        "gearmgr_failed_jobs_recorded",
        "Failed jobs recorded in the failed_jobs file, by reason ('lost': could not be written)",
        labels=["reason"],
    )
    for reason, n in failures.recorded.items():
        recorded.add_metric([reason], n)
    yield recorded


class MetricsServer(Listener):
    """A minimal HTTP/1.0 endpoint: every GET answers the metrics, then closes."""

    def __init__(
        self,
        address: str,
        collector: SupervisorCollector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._page = b""
        self._rendered_at = -RENDER_EVERY
        host, port = parse_address(address, default_port=9090)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"metrics: cannot listen on {address}: {exc.strerror}") from exc
        sock.listen(16)
        super().__init__(sock)
        self.address = address

    def complete(self, data: bytes) -> bool:
        return b"\r\n\r\n" in data or b"\n\n" in data

    def describe(self) -> str:
        return f"metrics {self.address}"

    def answer(self, data: bytes, reply: Reply) -> bytes:
        line = data.split(b"\n", 1)[0][:1024].decode("latin-1").split()
        if len(line) < 2 or line[0] != "GET":
            return _http("405 Method Not Allowed", b"only GET /metrics\n")
        now = self.clock()
        if not self._page or now - self._rendered_at >= RENDER_EVERY:
            self._page = _http("200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST)
            self._rendered_at = now
        return self._page

    def error_answer(self, message: str) -> bytes:
        return _http("500 Internal Server Error", message.encode() + b"\n")


def _http(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _places(snap: Snapshot) -> Iterator[GaugeMetricFamily]:
    """Jobs in hand and places, by function: an async process runs many jobs at once."""
    in_hand = GaugeMetricFamily(
        "gearmgr_jobs_in_hand", "Jobs running now in the worker processes", labels=["function"]
    )
    places = GaugeMetricFamily(
        "gearmgr_places", "Jobs the worker processes may run at once", labels=["function"]
    )
    totals: dict[str, list[int]] = {name: [0, 0] for name in snap.served}
    for proc in snap.processes:
        for name in proc.functions:
            entry = totals.setdefault(name, [0, 0])
            entry[0] += proc.in_hand
            entry[1] += proc.places
    for name, (hand, room) in sorted(totals.items()):
        in_hand.add_metric([name], hand)
        places.add_metric([name], room)
    yield in_hand
    yield places
