"""Test helper: a small network of hosts made of Linux network namespaces (iproute2, root).

One namespace holds a bridge (``br0``) and nothing else; each host is a namespace with one veth
pair whose outer end is a port of that bridge and whose inner end, ``eth0``, has the host's
address in 10.213.0.0/24. The interfaces live only in those namespaces, never in the test's own,
so runs side by side cannot clash on names; namespace names carry the test process's pid
(``gmsx<pid>-<host>``), which is how :func:`clean_leftovers` tells an aborted run's leftovers
from a live run's.

Processes are started in a host with ``ip netns exec`` (which execs the command: the Popen pid
is the process's own). The test process reaches into a host without starting one: :meth:`Net.
call` runs a function on a thread that first joined the host's network namespace
(``setns``), so the sockets it opens live there.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tests.support import which

T = TypeVar("T")

PREFIX = "gmsx"
SUBNET = "10.213.0"
CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"^{PREFIX}(\d+)-\S+")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = which("ip")
    assert exe, "iproute2 is not installed"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=check, timeout=20)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (the test is skipped with it), or None."""
    if which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (run the suite as root, as `make test` in CI does)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    try:
        veth = ip(
            "-n",
            probe,
            "link",
            "add",
            "name",
            "va",
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            check=False,
        )
        if veth.returncode != 0:
            return f"veth pairs cannot be made here: {veth.stderr.strip()}"
        bridge = ip("-n", probe, "link", "add", "name", "br0", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"bridges cannot be made here: {bridge.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def namespaces() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pids_in(namespace: str) -> list[int]:
    """Live processes in ``namespace`` (``ip netns pids``)."""
    out = ip("netns", "pids", namespace, check=False).stdout
    return [int(word) for word in out.split() if word.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(namespace: str) -> None:
    """SIGKILL every process in ``namespace``, then delete it (its veth ends go with it)."""
    for _ in range(50):
        pids = pids_in(namespace)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        threading.Event().wait(0.1)
    ip("netns", "del", namespace, check=False)


def clean_leftovers() -> list[str]:
    """Remove the namespaces (and their processes) of earlier runs that were aborted: those
    named with this prefix whose test process is gone. Returns their names."""
    gone = []
    for name in namespaces():
        match = _NAME.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            remove(name)
            gone.append(name)
    return gone


class Net:
    """Hosts on one bridge. Use as a context manager: everything is removed on exit."""

    def __init__(self, hosts: list[str]) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}-br"
        self.hosts = {host: f"{self.tag}-{host}" for host in hosts}
        self.address = {host: f"{SUBNET}.{10 + i}" for i, host in enumerate(hosts)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.made: list[str] = []

    def __enter__(self) -> Net:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def _make(self) -> None:
        self._add(self.bridge)
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        for host, ns in self.hosts.items():
            self._add(ns)
            port = f"v-{host}"
            veth = ("type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", self.bridge, "link", "add", port, *veth)
            ip("-n", self.bridge, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.address[host]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def _add(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.made.append(namespace)

    def remove(self) -> None:
        """Kill every process started here and in the hosts, delete every namespace."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for namespace in reversed(self.made):
            remove(namespace)
        self.made.clear()

    def popen(self, host: str, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``args`` in ``host`` (killed at the latest by :meth:`remove`)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.hosts[host], *args], **kwargs)
        self.procs.append(proc)
        return proc

    def pids(self, host: str) -> list[int]:
        return pids_in(self.hosts[host])

    def call(self, host: str, fn: Callable[[], T]) -> T:
        """``fn()`` on a thread inside ``host``'s network: its sockets connect from there."""
        result: list[Any] = []

        def run() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.hosts[host]}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            try:
                result.append((True, fn()))
            except BaseException as exc:  # handed to the caller's thread
                result.append((False, exc))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(30)
        if not result:
            raise TimeoutError(f"a call in host {host} did not return within 30 s")
        ok, value = result[0]
        if not ok:
            raise value
        return value
