"""Benchmark: 1 and 2 job servers x 1 and 2 gearmgr hosts, all on this machine (issue 16).

Four clusters are started once and kept: S gearmand (``--threads=1``) and H supervisors, each
with ``--processes`` worker processes of a no-op function connected to every server. The
workers are SIGSTOPped between trials. A trial, for one cluster:

1. ``gearmgr.Client`` (one process, this one) submits ``--jobs`` background jobs without a
   unique id: the client hashes a random one per job, so the jobs spread over the servers.
   The submit rate and how many jobs each server got are recorded;
2. the workers get SIGCONT; the time until every server's queue is empty gives the drain rate,
   and each host's share of the jobs (the supervisors' ``jobs_done``) is recorded.

The clusters take turns round by round (the order rotating), so a noisy minute hits all of
them. Every host is on the same 2-core machine: the figures show what a second server or host
costs and how the work is shared, not the capacity of a real cluster, where each host brings
its own cores.

With ``--queue sqlite`` every gearmand keeps its queue in an SQLite file (``-q libsqlite3``),
as a durable cluster would: each background job is then written to the file before the server
acknowledges it, and deleted from it when done.

    python bench/cluster.py [--quick] [--rounds N] [--jobs N] [--processes N]
                            [--queue builtin|sqlite] [--json FILE]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections import Counter

import common as cm

from gearmgr.wire.client import Client

FUNCTION = "noop_cluster"
QUEUES = {
    "builtin": [],  # gearmand's memory queue: nothing survives it
    "sqlite": ["-q", "libsqlite3", "--libsqlite3-db={dir}/queue.sqlite"],
}
SHAPES = [(1, 1), (1, 2), (2, 1), (2, 2)]  # (servers, hosts)


class Cluster:
    """S private gearmand and H supervisors serving all of them."""

    def __init__(self, servers: int, hosts: int, processes: int, queue: str) -> None:
        self.label = f"{servers} server{'s' * (servers > 1)} x {hosts} host{'s' * (hosts > 1)}"
        self.gearmands = [cm.Gearmand(extra=QUEUES[queue]).start() for _ in range(servers)]
        self.addresses = [g.address for g in self.gearmands]
        config = {"servers": self.addresses, "dedicated_count": processes}
        self.hosts = [cm.Supervised(config, [FUNCTION]).start() for _ in range(hosts)]
        for g in self.gearmands:
            g.wait_workers(FUNCTION, processes * hosts, timeout=60)
        self.pids = [pid for sup in self.hosts for pid in sup.worker_pids()]
        assert len(self.pids) == processes * hosts, self.pids
        cm.signal_all(self.pids, signal.SIGSTOP)

    def done_per_host(self) -> list[int]:
        return [sup.status()["functions"][FUNCTION]["jobs_done"] for sup in self.hosts]

    def trial(self, jobs: int) -> dict:
        for sup in self.hosts:
            sup.check_alive()
        before = self.done_per_host()
        per_server: Counter[str] = Counter()
        with Client(self.addresses, timeout=30) as client:
            t0 = time.perf_counter()
            for _ in range(jobs):
                client.submit(FUNCTION, b"x", background=True)
            submit_s = time.perf_counter() - t0
        for g in self.gearmands:
            per_server[g.address] = g.queued(FUNCTION)
        assert sum(per_server.values()) == jobs, per_server
        t0 = time.perf_counter()
        cm.signal_all(self.pids, signal.SIGCONT)
        try:
            for g in self.gearmands:
                g.wait_empty(FUNCTION, timeout=600)
            drain_s = time.perf_counter() - t0
        finally:
            cm.signal_all(self.pids, signal.SIGSTOP)
        hosts = [after - b for after, b in zip(self.done_per_host(), before, strict=True)]
        return {
            "submit_per_s": jobs / submit_s,
            "drain_per_s": jobs / drain_s,
            "per_server": [per_server[a] for a in self.addresses],
            "per_host": hosts,
        }

    def stop(self) -> None:
        cm.signal_all(self.pids, signal.SIGCONT)
        for sup in self.hosts:
            sup.stop()
        for g in self.gearmands:
            g.stop()


def share(counts: list[int]) -> str:
    total = sum(counts) or 1
    return " / ".join(f"{100 * c / total:.0f} %" for c in counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3,000 jobs")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per trial (20,000)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes per host (2)")
    parser.add_argument(
        "--queue", choices=sorted(QUEUES), default="builtin", help="gearmand's queue (builtin)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results there")
    parser.add_argument("--no-save", action="store_true", help="write no result file")
    args = parser.parse_args(argv)
    rounds, jobs = (2, 3000) if args.quick else (args.rounds, args.jobs)
    clusters: list[Cluster] = []
    try:
        for servers, hosts in SHAPES:
            clusters.append(Cluster(servers, hosts, args.processes, args.queue))
        trials: dict[str, list[dict]] = {c.label: [] for c in clusters}
        for r in range(rounds):
            turn = clusters[r % len(clusters) :] + clusters[: r % len(clusters)]
            for cluster in turn:
                result = cluster.trial(jobs)
                trials[cluster.label].append(result)
                print(
                    f"  round {r + 1} {cluster.label}: submit {result['submit_per_s']:,.0f}/s, "
                    f"drain {result['drain_per_s']:,.0f}/s, servers {result['per_server']}, "
                    f"hosts {result['per_host']}",
                    file=sys.stderr,
                )
    finally:
        for cluster in clusters:
            cluster.stop()
    rows, summary = [], {}
    base = statistics.median(t["drain_per_s"] for t in trials[clusters[0].label])
    for label, runs in trials.items():
        drain = [t["drain_per_s"] for t in runs]
        submit = [t["submit_per_s"] for t in runs]
        servers = [sum(t["per_server"][i] for t in runs) for i in range(len(runs[0]["per_server"]))]
        hosts = [sum(t["per_host"][i] for t in runs) for i in range(len(runs[0]["per_host"]))]
        summary[label] = {
            "drain_per_s": cm.stats(drain),
            "submit_per_s": cm.stats(submit),
            "per_server_total": servers,
            "per_host_total": hosts,
            "trials": runs,
        }
        rows.append(
            [
                label,
                cm.fmt(statistics.median(drain)),
                cm.fmt(min(drain)),
                f"{statistics.median(drain) / base:.2f}",
                cm.fmt(statistics.median(submit)),
                share(servers),
                share(hosts),
            ]
        )
    headers = [
        "cluster",
        "drain jobs/s (median)",
        "lowest",
        "vs 1 x 1",
        "submit jobs/s",
        "jobs per server",
        "jobs per host",
    ]
    print(cm.table(headers, rows))
    result = {
        "jobs": jobs,
        "rounds": rounds,
        "processes_per_host": args.processes,
        "queue": args.queue,
        "clusters": summary,
    }
    name = "cluster" if args.queue == "builtin" else f"cluster-{args.queue}"
    cm.save_unless_told_not(name, result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
