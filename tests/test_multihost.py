"""Integration: a cluster on one machine, each host in a network namespace of its own.

Two gearmand with SQLite queues (s1, s2), two gearmgr hosts (h1, h2, two worker processes each,
serving both servers) and a client host (c) submitting background jobs without pause. Under
that load: s1 is killed with SIGKILL and restarted on the same queue file, then h1's supervisor
is killed with SIGKILL. Then:

* every background job the client had acknowledged (a handle returned) ran: the workers record
  each job's unique id in files (the records are shared; the networks are not); the jobs
  waiting at s1 when it died (both hosts paused a moment before, so that some wait) ran after
  its restart, from its SQLite queue;
* the client spread the jobs over both servers while both were up, sent all of them to s2
  while s1 was down, and none raised;
* h1 left no process behind (its workers die with their supervisor);
* h2 serves the restarted s1: it rejoined, and jobs sent to s1 after h1's death ran on h2.

Needs root and iproute2 (installed by `make test`); skipped with the reason where namespaces
cannot be made. Every namespace and process is removed at the end, even when the test fails,
and the leftovers of an earlier aborted run first.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gearmgr.ops.control import request
from gearmgr.wire.admin import Admin
from tests import netns
from tests.support import RunningSupervisor, pid_alive, wait_for, which

HOSTS = ["s1", "s2", "h1", "h2", "c"]
PORT = 4730

RECORD = """\
import os
import time


def record(job):
    time.sleep(0.002)
    name = f"{os.environ['SCALEOUT_HOST']}-{os.getpid()}.txt"
    with open(os.path.join(os.environ["SCALEOUT_RECORDS"], name), "a") as f:
        f.write(f"{job.unique} {job.handle}\\n")
"""

# The client host's program: background jobs one after the other, each line flushed as it is
# known. "ack": the server answered JOB_CREATED (the job must run); "fail": submit raised.
CLIENT = """\
import os
import sys
import time

from gearmgr import Client, GearmanError

servers, out, stop = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
with Client(servers, timeout=5, connect_timeout=1) as client, open(out, "a", buffering=1) as log:
    i = 0
    while not os.path.exists(stop):
        unique = f"job-{i}"
        try:
            handle = client.submit("record", unique, background=True, unique=unique)
        except GearmanError as exc:
            log.write(f"fail {unique} {time.monotonic()} {type(exc).__name__}: {exc}\\n")
        else:
            log.write(f"ack {unique} {time.monotonic()} {handle}\\n")
        i += 1
        time.sleep(0.004)
"""


@pytest.fixture
def net() -> Iterator[netns.Net]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    netns.clean_leftovers()
    with netns.Net(HOSTS) as made:
        yield made


@dataclass
class Server:
    """A gearmand in a host of the net, with its SQLite queue; its handles are ``HOST:N``."""

    net: netns.Net
    host: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.net.address[self.host]}:{PORT}"

    def start(self) -> Server:
        exe = which("gearmand")
        assert exe, "gearmand is not installed (apt-get install gearman-job-server)"
        args = [
            exe,
            f"--listen={self.net.address[self.host]}",
            f"--port={PORT}",
            "--threads=1",
            "-q",
            "libsqlite3",
            f"--libsqlite3-db={self.workdir / f'{self.host}.sqlite'}",
            f"--job-handle-prefix={self.host}",
            f"--log-file={self.workdir / f'{self.host}.log'}",
            "--verbose=NOTICE",
        ]
        self.proc = self.net.popen(self.host, args, stdout=subprocess.DEVNULL)
        wait_for(self.answers, timeout=15, what=f"gearmand in {self.host}")
        return self

    def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"gearmand in {self.host} died"
        try:
            return bool(self.admin(lambda a: a.version()))
        except Exception:
            return False

    def admin(self, fn):  # type: ignore[no-untyped-def]
        """``fn(Admin)`` from the client host, as a remote operator would ask."""

        def ask():  # type: ignore[no-untyped-def]
            with Admin(self.address, timeout=3) as conn:
                return fn(conn)

        return self.net.call("c", ask)

    def worker_ips(self) -> Counter[str]:
        """Connections that registered ``record``, by the address they come from."""
        rows = self.admin(lambda a: a.workers())
        return Counter(row.ip for row in rows if "record" in row.functions)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def queued(server: Server) -> int:
    """Jobs of ``record`` waiting at ``server`` (not running)."""
    rows = server.admin(lambda a: a.status())
    return sum(row.total - row.running for row in rows if row.function == "record")


def read_acks(path: Path) -> tuple[list[tuple[str, float, str]], list[str]]:
    """(acknowledged jobs as (unique, time, handle), lines of failed submits)."""
    acks, fails = [], []
    for line in path.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "ack":
            unique, moment, handle = rest.split(" ", 2)
            acks.append((unique, float(moment), handle))
        elif kind == "fail":
            fails.append(rest)
    return acks, fails


def read_records(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """unique id -> every run of it: (host, handle)."""
    ran: dict[str, list[tuple[str, str]]] = {}
    for path in folder.glob("*.txt"):
        host = path.name.split("-")[0]
        for line in path.read_text().splitlines():
            if line.strip():
                unique, handle = line.split()[:2]
                ran.setdefault(unique, []).append((host, handle))
    return ran


def test_a_cluster_loses_no_acknowledged_job_when_a_server_and_a_host_die(
    net: netns.Net, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    workers = tmp_path / "workers"
    workers.mkdir()
    (workers / "record.py").write_text(RECORD)
    s1 = Server(net, "s1", tmp_path).start()
    s2 = Server(net, "s2", tmp_path).start()
    servers = [s1.address, s2.address]

    sups: dict[str, RunningSupervisor] = {}
    client: subprocess.Popen[bytes] | None = None
    stop_file = tmp_path / "stop"
    try:
        for host in ("h1", "h2"):
            workdir = tmp_path / host
            workdir.mkdir()
            config = {
                "servers": servers,
                "worker_dirs": [str(workers)],
                "include": ["record"],
                "dedicated_count": 2,
            }
            env = {"SCALEOUT_HOST": host, "SCALEOUT_RECORDS": str(records)}
            wrapper = ["ip", "netns", "exec", net.hosts[host]]
            sups[host] = RunningSupervisor(workdir, config, env, wrapper).start()

        def registered(expected: Counter[str]) -> bool:
            for sup in sups.values():
                if sup.proc is not None and sup.proc.returncode is None:
                    sup.assert_alive()
            return all(s.worker_ips() == expected for s in (s1, s2))

        both = Counter({net.address["h1"]: 2, net.address["h2"]: 2})
        wait_for(lambda: registered(both), timeout=30, interval=0.2, what="4 workers at each")

        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        acks_path = tmp_path / "acks.txt"
        argv = [sys.executable, str(script), ",".join(servers), str(acks_path), str(stop_file)]
        client = net.popen("c", argv)

        def acked() -> int:
            assert client is not None and client.poll() is None, "the client program died"
            return acks_path.read_text().count("\nack ") if acks_path.exists() else 0

        def load(more: int) -> None:
            target = acked() + more
            wait_for(lambda: acked() >= target, timeout=30, interval=0.05, what=f"{more} acks")

        load(300)  # both servers up
        # A backlog at s1 when it dies: both hosts stop taking jobs for a moment.
        for sup in sups.values():
            request(sup.workdir / "gearmgr.sock", "pause", function="record")
        backlog = wait_for(
            lambda: queued(s1) >= 40 and queued(s1), timeout=30, what="40 jobs waiting at s1"
        )
        s1_killed = time.monotonic()
        s1.kill()
        load(300)  # s1 down: its jobs go to s2
        for sup in sups.values():
            request(sup.workdir / "gearmgr.sock", "resume", function="record")
        s1_restarted = time.monotonic()
        s1.start()  # the same SQLite file: what it had acknowledged comes back
        wait_for(lambda: registered(both), timeout=30, interval=0.2, what="both hosts at s1")
        load(150)
        h1_workers = sups["h1"].worker_pids()
        assert len(h1_workers) == 2
        h1_killed = time.monotonic()
        sups["h1"].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        sups["h1"].proc.wait(timeout=10)  # type: ignore[union-attr]
        wait_for(lambda: not net.pids("h1"), timeout=15, what="no process left in h1")
        h1_gone = time.monotonic()
        load(200)
        stop_file.touch()
        client.wait(timeout=15)

        acks, fails = read_acks(acks_path)
        assert not fails, f"{len(fails)} submits raised, none should have: {fails[:5]}"
        assert not [pid for pid in h1_workers if pid_alive(pid)], "h1's workers outlived it"

        # Every acknowledged job ran, some twice perhaps, never none.
        wanted = {unique for unique, _, _ in acks}
        wait_for(
            lambda: wanted <= read_records(records).keys(),
            timeout=60,
            interval=0.2,
            what="every acknowledged job recorded",
        )
        ran = read_records(records)

        def servers_of(start: float, end: float) -> Counter[str]:
            return Counter(h.split(":")[0] for _, t, h in acks if start <= t < end)

        up = servers_of(0, s1_killed)
        assert sum(up.values()) >= 300
        share = up["s1"] / sum(up.values())
        assert 0.35 < share < 0.65, f"jobs per server while both were up: {dict(up)}"
        down = servers_of(s1_killed + 0.2, s1_restarted)  # one submit may straddle the kill
        assert down["s2"] >= 200 and down["s1"] == 0, f"while s1 was down: {dict(down)}"
        back = servers_of(h1_gone, float("inf"))
        assert back["s1"] >= 40, f"after s1 came back: {dict(back)}"

        # h2 serves the restarted s1 alone: its workers are registered there, and the jobs
        # sent to s1 after h1 died ran on h2.
        assert s1.worker_ips() == Counter({net.address["h2"]: 2})
        late_s1 = [u for u, t, h in acks if t >= h1_gone and h.startswith("s1:")]
        assert late_s1 and all({host for host, _ in ran[u]} == {"h2"} for u in late_s1)
        # The jobs waiting at s1 when it died ran after its restart, under new handles.
        replayed = [u for u, _, h in acks if h.startswith("s1:") and h not in dict(ran[u]).values()]
        assert len(replayed) >= backlog
        print(
            f"acks {len(acks)}: both up {dict(up)}, s1 down {dict(down)}, after {dict(back)}; "
            f"run more than once {sum(len(ran[u]) > 1 for u in wanted)}; acknowledged by s1 and "
            f"run under a new handle (replayed from its SQLite queue) {len(replayed)}; "
            f"h1 empty {h1_gone - h1_killed:.2f}s after its kill"
        )
    finally:
        stop_file.touch()
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=10)
        for sup in sups.values():
            sup.stop()


def test_the_leftovers_of_an_aborted_run_are_removed() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{netns.PREFIX}{dead.pid}-leftover"
    netns.ip("netns", "add", name)
    stray = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "120"])
    try:
        wait_for(lambda: netns.pids_in(name), what="the stray process in the namespace")
        assert name in netns.clean_leftovers()
        assert name not in netns.namespaces()
        assert stray.wait(timeout=10) == -signal.SIGKILL
    finally:
        if stray.poll() is None:
            stray.kill()
        netns.ip("netns", "del", name, check=False)
