"""Test helpers shared by the test modules: a real gearmand on a free port, polling, the C CLI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def admin(port: int, command: str, timeout: float = 5.0) -> list[str]:
    """Send one text admin command to gearmand and return its answer's lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command.encode() + b"\n")
        buf = b""
        single = command.split()[0] in ("version", "getpid", "verbose", "maxqueue", "cancel")
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if single and b"\n" in buf:
                break
            if buf == b".\n" or buf.endswith(b"\n.\n"):
                break
    lines = buf.decode().splitlines()
    return lines if single else lines[:-1]


def function_status(port: int) -> dict[str, tuple[int, int, int]]:
    """``status`` as {function: (total, running, workers)}."""
    out = {}
    for line in admin(port, "status"):
        fn, total, running, workers = line.split("\t")
        out[fn] = (int(total), int(running), int(workers))
    return out


class Gearmand:
    """A real gearmand (Debian's gearman-job-server) on a free loopback port."""

    def __init__(self, workdir: Path, port: int | None = None, queue_db: Path | None = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.queue_db = queue_db
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"gearmand-{self.port}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Gearmand:
        exe = which("gearmand")
        assert exe, "gearmand is not installed (apt-get install gearman-job-server)"
        args = [
            exe,
            "--listen=127.0.0.1",
            f"--port={self.port}",
            "--threads=1",
            f"--log-file={self.log}",
            f"--pid-file={self.workdir / f'gearmand-{self.port}.pid'}",
            "--verbose=NOTICE",
        ]
        if self.queue_db:
            args += ["-q", "libsqlite3", f"--libsqlite3-db={self.queue_db}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10, what=f"gearmand on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"gearmand exited with {self.proc.returncode}: {self.log}")
        try:
            return bool(admin(self.port, "version", timeout=1))
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def status(self) -> dict[str, tuple[int, int, int]]:
        return function_status(self.port)

    def workers(self) -> list[str]:
        return admin(self.port, "workers")


def gearman_cli(
    port: int, *args: str, input: bytes | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[bytes]:
    """Run the C ``gearman`` tool (gearman-tools) against the server on ``port``."""
    exe = which("gearman")
    assert exe, "the gearman tool is not installed (apt-get install gearman-tools)"
    return subprocess.run(
        [exe, "-h", "127.0.0.1", "-p", str(port), *args],
        input=input,
        capture_output=True,
        timeout=timeout,
    )
