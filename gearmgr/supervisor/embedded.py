"""The embedded gearmand (``embedded_server: true``): started first, watched, stopped last.

gearmand listens on the first ``servers`` entry (loopback only) with a persistent sqlite queue
beside the config file, so background jobs survive a crash. Choices, from measurements in
research/clients.md: one thread (faster than the default four on a small machine); no
``--store-queue-on-shutdown`` (with it, a crash loses the whole queue); a pid file of its own
beside the queue (gearmand deletes whatever file is at its ``--pid-file`` path).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from gearmgr.children import reap, set_parent_death_signal
from gearmgr.errors import FatalError
from gearmgr.units import parse_address

log = logging.getLogger("gearmgr.embedded")
SEARCH_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"


class EmbeddedServerError(FatalError):
    """gearmand is missing or does not come up."""


def find_gearmand() -> str:
    """The gearmand binary: ``$GEARMGR_GEARMAND`` (e.g. a build of your own), else the PATH
    and the sbin folders."""
    override = os.environ.get("GEARMGR_GEARMAND")
    if override:
        if not os.access(override, os.X_OK):
            raise EmbeddedServerError(
                f"embedded_server: GEARMGR_GEARMAND={override} is not an executable file"
            )
        return override
    exe = shutil.which("gearmand", path=SEARCH_PATH)
    if not exe:
        raise EmbeddedServerError(
            "embedded_server: gearmand is not installed "
            "(on Debian or Ubuntu: apt-get install gearman-job-server)"
        )
    return exe


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a gearmand answers the admin ``version`` command at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"version\n")
            return s.recv(64).startswith(b"OK")
    except OSError:
        return False


class EmbeddedServer:
    def __init__(self, address: str, state_dir: Path) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.state_dir = state_dir
        self.queue_file = state_dir / "gearmgr-queue.sqlite"
        self.pid_file = state_dir / "gearmgr-gearmand.pid"
        self.log_file = state_dir / "gearmgr-gearmand.log"
        self.pid = 0  # its restarts are the supervisor's, with lifecycle.Lifecycle

    def command(self) -> list[str]:
        return [
            find_gearmand(),
            f"--listen={self.host}",
            f"--port={self.port}",
            "--threads=1",
            "--queue-type=libsqlite3",
            f"--libsqlite3-db={self.queue_file}",
            f"--pid-file={self.pid_file}",
            f"--log-file={self.log_file}",
            "--verbose=WARNING",
        ]

    def start(self) -> int:
        """Start gearmand (in a session of its own, so Ctrl-C in a terminal reaches only the
        supervisor, which stops it last). Returns its pid; the caller reaps it."""
        if answers(self.host, self.port):
            raise EmbeddedServerError(
                f"embedded_server: something already answers on {self.address}; "
                "stop it or set embedded_server: false to use it"
            )
        # gearmand's own complaints (a bad option, a port in use) go to its log file: a pipe
        # that nobody reads once it runs would fill up and block it.
        with open(self.log_file, "ab") as errors:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
                preexec_fn=set_parent_death_signal,
            )
        self.pid = proc.pid
        proc.returncode = 0  # the supervisor reaps it itself; keep subprocess from trying
        return self.pid

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until gearmand answers; raise if it exits or does not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(self.host, self.port, 0.2):
                log.info(
                    "embedded gearmand %d answers on %s (queue %s)",
                    self.pid,
                    self.address,
                    self.queue_file,
                )
                return
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                err = _last_line(self.log_file)
                self.pid = 0
                why = err or f"exit status {os.waitstatus_to_exitcode(status)}"
                raise EmbeddedServerError(
                    f"embedded gearmand exited at start ({why}); see {self.log_file}"
                )
            time.sleep(0.01)
        raise EmbeddedServerError(
            f"embedded gearmand did not answer on {self.address} in {timeout:g}s"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """TERM, wait, then KILL if it lingers. Reaps it."""
        if not self.pid:
            return
        pid, self.pid = self.pid, 0
        reap(pid, timeout, signal.SIGTERM)


def _last_line(path: Path) -> str:
    """The last line of gearmand's log: why it stopped, usually."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
