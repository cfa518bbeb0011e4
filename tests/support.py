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

from gearmgr.wire.admin import Admin
from gearmgr.wire.client import ServerUnavailable

T = TypeVar("T")

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
    error: type[Exception] = AssertionError,
) -> T:
    """Poll ``predicate`` until it returns something truthy; after ``timeout``, raise ``error``
    (the test fails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


# The admin commands whose answer is one line; the others end with a line holding ".".
SINGLE_LINE_COMMANDS = ("version", "getpid", "verbose", "maxqueue", "cancel")


def admin_lines(conn: Admin, command: str) -> list[str]:
    """One text admin command over ``conn`` (gearmgr's own admin client): its answer's lines,
    without the final ``.``. ConnectionError when the server cannot be reached."""
    single = command.split()[0] in SINGLE_LINE_COMMANDS
    try:
        return conn.command(command, expect_list=not single)
    except ServerUnavailable as exc:
        raise ConnectionError(str(exc)) from exc


def admin(port: int, command: str, timeout: float = 5.0) -> list[str]:
    """Send one text admin command to the gearmand on ``port`` and return its answer's lines."""
    with Admin(f"127.0.0.1:{port}", timeout) as conn:
        return admin_lines(conn, command)


def status_of(conn: Admin) -> dict[str, tuple[int, int, int]]:
    """``status`` as {function: (total, running, workers)}; ConnectionError if unreachable."""
    try:
        rows = conn.status()
    except ServerUnavailable as exc:
        raise ConnectionError(str(exc)) from exc
    return {row.function: (row.total, row.running, row.workers) for row in rows}


def function_status(port: int) -> dict[str, tuple[int, int, int]]:
    """``status`` of the gearmand on ``port`` as {function: (total, running, workers)}."""
    with Admin(f"127.0.0.1:{port}") as conn:
        return status_of(conn)


class Gearmand:
    """A real gearmand (Debian's gearman-job-server) on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        queue_db: Path | None = None,
        handle_prefix: str | None = None,
    ):
        self.workdir = workdir
        self.port = port or free_port()
        self.queue_db = queue_db
        self.handle_prefix = handle_prefix  # handles "<prefix>:N" instead of "H:<host>:N"
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
        if self.handle_prefix:
            args.append(f"--job-handle-prefix={self.handle_prefix}")
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


def unique_homed_at(server: str, servers: list[str], prefix: str = "u") -> str:
    """A unique id that the client's hashing sends to ``server`` while all ``servers`` answer."""
    from gearmgr.wire.rendezvous import Rendezvous

    ring = Rendezvous(servers)
    return next(
        f"{prefix}{i}" for i in range(10_000) if ring.home(f"{prefix}{i}".encode()) == server
    )


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


class RunningSupervisor:
    """``gearmgr run`` as a real subprocess with a config written into a temp folder."""

    def __init__(
        self,
        workdir: Path,
        config: dict,
        env: dict[str, str] | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        """``wrapper``: a command prefix, e.g. ``ip netns exec NS`` (it must exec the rest)."""
        import yaml

        self.workdir = workdir
        self.config_path = workdir / "gearmgr.yaml"
        config = {"control_socket": "gearmgr.sock", **config}
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "supervisor.log"
        self.env = {**os.environ, "GEARMGR_ALLOW_ROOT": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.wrapper = wrapper or []

    def start(self) -> RunningSupervisor:
        import sys

        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                sys.executable,
                "-m",
                "gearmgr",
                "run",
                "-c",
                str(self.config_path),
                "-v",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict:
        from gearmgr.ops.control import request

        return request(self.workdir / "gearmgr.sock", "status")

    def try_status(self) -> dict | None:
        from gearmgr.ops.control import ControlError

        try:
            return self.status()
        except ControlError:
            return None

    def worker_pids(self, function: str | None = None) -> list[int]:
        status = self.try_status()
        if not status:
            return []
        return sorted(
            p["pid"] for p in status["processes"] if function is None or function in p["functions"]
        )

    def wait_ready(self, port: int, functions: dict[str, int], timeout: float = 15.0) -> None:
        """Wait until gearmand lists at least ``n`` workers for each function."""

        def ready() -> bool:
            self.assert_alive()
            try:
                status = function_status(port)
            except OSError:
                return False
            return all(status.get(f, (0, 0, 0))[2] >= n for f, n in functions.items())

        wait_for(ready, timeout=timeout, what=f"workers registered for {functions}")

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"supervisor exited with {self.proc.returncode}:\n{self.log()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGQUIT)
                self.proc.wait(timeout=10)
        if hasattr(self, "_log"):
            self._log.close()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def gearmgr_reload(sup: RunningSupervisor) -> subprocess.CompletedProcess[str]:
    """``gearmgr reload -c CONFIG`` of a running supervisor, as an operator types it."""
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gearmgr", "reload", "-c", str(sup.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
