"""Shared pieces of the benchmarks: a private gearmand, pre-filling queues, admin polling,
process CPU and memory readings, the C/PHP/gearmgr competitors, statistics and result files.

Nothing here is imported by gearmgr itself. Every benchmark runs its competitors on one gearmand
(``--threads=1``, the value gearmgr's ``embedded_server`` uses), alternating them round by round,
and reports min/median/max and ratios, because the machine is small (2 cores) and shared.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PY = sys.executable

sys.path.insert(0, str(ROOT))
from gearmgr.units import parse_address  # noqa: E402
from gearmgr.wire.admin import Admin  # noqa: E402
from gearmgr.wire.protocol import PacketType, encode  # noqa: E402
from tests import support  # noqa: E402
from tests.support import children_of as _children_of  # noqa: E402
from tests.support import free_port  # noqa: E402 - re-exported for the bench scripts

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- small helpers ------------------------------------------------------------------------------


def which(name: str) -> str:
    exe = support.which(name)
    if not exe:
        sys.exit(f"bench: {name} is not installed: run bench/setup.sh")
    return exe


def wait_for(
    pred: Callable[[], object], timeout: float = 15.0, interval: float = 0.005, what: str = ""
):
    """tests.support's poll, raising TimeoutError, with the benchmarks' shorter interval."""
    return support.wait_for(pred, timeout, interval, what, error=TimeoutError)


def workdir(prefix: str = "gearmgr-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def stats(values: Iterable[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan"), "n": 0}
    return {"min": v[0], "median": statistics.median(v), "max": v[-1], "n": len(v)}


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def fmt(x: float, digits: int = 0) -> str:
    if x != x:  # nan
        return "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    widths = [
        max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h)
        for i, h in enumerate(headers)
    ]

    def line(cells: list) -> str:
        return (
            "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=False)) + " |"
        )

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def save(name: str, data: dict, out: Path | None = None, quick: bool = False) -> Path:
    """Write results as JSON: bench/results/NAME.json (--quick runs: bench/results/quick/)."""
    path = out or (RESULTS / "quick" if quick else RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def save_unless_told_not(name: str, result: dict, args: object) -> None:
    """The scripts' common ending: save unless ``--no-save``, to ``--json`` when given."""
    if getattr(args, "no_save", False):
        return
    out = getattr(args, "json", None)
    path = save(name, result, Path(out) if out else None, quick=getattr(args, "quick", False))
    print("saved", path, file=sys.stderr)


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    load = os.getloadavg()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gearmand": out(which("gearmand"), "--version").splitlines()[0]
        if support.which("gearmand")
        else "",
        "php": out("php", "-r", 'echo PHP_VERSION, " gearman ", phpversion("gearman");')
        if shutil.which("php")
        else "",
        "libgearman": out("dpkg-query", "-W", "-f=${Version}", "libgearman8")
        or out("dpkg-query", "-W", "-f=${Version}", "libgearman-dev"),
        "gcc": out("gcc", "-dumpfullversion"),
        "loadavg": " ".join(f"{x:.2f}" for x in load),
    }


# -- /proc readings ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_seconds_precise(pid: int) -> float:
    """Run time of one process from schedstat (nanoseconds, far finer than clock ticks)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        return cpu_seconds(pid)


def threads_cpu(pid: int) -> float:
    """Sum of schedstat run time over all threads of ``pid``."""
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0]) / 1e9
            except (OSError, ValueError):
                pass
    except OSError:
        return cpu_seconds(pid)
    return total


def uss(pid: int) -> int:
    """Unique set size in bytes (Private_Clean + Private_Dirty from smaps_rollup)."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid``, in pid order."""
    return sorted(_children_of(pid))


def signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# -- gearmand ------------------------------------------------------------------------------------


class Gearmand:
    """A private gearmand on a free loopback port, one thread, log and pid file in a temp dir."""

    def __init__(self, threads: int | None = 1, extra: Iterable[str] = ()) -> None:
        """``threads`` None: gearmand's default thread count (no ``--threads``); ``extra``:
        more arguments, where ``{dir}`` is the temp dir (e.g. a queue file there)."""
        self.dir = workdir("gearmgr-bench-gearmand-")
        self.port = free_port()
        self.threads = threads
        self.extra = [arg.format(dir=self.dir) for arg in extra]
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin = Admin(self.address, timeout=5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Gearmand:
        self.proc = subprocess.Popen(
            [
                which("gearmand"),
                "--listen=127.0.0.1",
                f"--port={self.port}",
                *([f"--threads={self.threads}"] if self.threads is not None else []),
                f"--log-file={self.dir / 'gearmand.log'}",
                f"--pid-file={self.dir / 'gearmand.pid'}",
                "--verbose=ERROR",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=10, what=f"gearmand on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"gearmand exited with {self.proc.returncode}; see {self.dir}")
        try:
            self.admin("version")
            return True
        except OSError:
            return False

    def admin(self, command: str) -> list[str]:
        """One text admin command over a kept-open connection (reopened after an error)."""
        return support.admin_lines(self._admin, command)

    def status(self) -> dict[str, tuple[int, int, int]]:
        return support.status_of(self._admin)

    def queued(self, function: str) -> int:
        return self.status().get(function, (0, 0, 0))[0]

    def workers_of(self, function: str) -> int:
        return self.status().get(function, (0, 0, 0))[2]

    def wait_workers(self, function: str, n: int, timeout: float = 20.0) -> None:
        wait_for(
            lambda: self.workers_of(function) >= n, timeout, 0.005, f"{n} workers for {function}"
        )

    def prefill(self, function: str, n: int, payload: bytes = b"x" * 16) -> float:
        """Queue ``n`` background jobs, pipelined over one raw socket; return the seconds taken."""
        name = function.encode()
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            batch = 2000
            sent = 0
            got = 0
            buf = b""
            while sent < n:
                k = min(batch, n - sent)
                s.sendall(
                    b"".join(
                        encode(PacketType.SUBMIT_JOB_BG, name, uuid.uuid4().hex.encode(), payload)
                        for _ in range(k)
                    )
                )
                sent += k
                # read the JOB_CREATED answers of this batch so the socket never stalls
                want = sent
                while got < want:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        raise ConnectionError("gearmand closed the connection while pre-filling")
                    buf += chunk
                    while len(buf) >= 12:
                        size = int.from_bytes(buf[8:12], "big")
                        if len(buf) < 12 + size:
                            break
                        buf = buf[12 + size :]
                        got += 1
        return time.perf_counter() - t0

    def wait_empty(self, function: str, timeout: float = 120.0, interval: float = 0.002) -> float:
        """Poll ``status`` every ``interval`` until ``function`` has 0 jobs; return the time."""
        deadline = time.perf_counter() + timeout
        while True:
            if self.queued(function) == 0:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{function}: queue not drained within {timeout}s")
            time.sleep(interval)

    def stop(self) -> None:
        self._admin.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Gearmand:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- competitors --------------------------------------------------------------------------------


_BUILD: Path | None = None


def build_dir() -> Path:
    global _BUILD
    if _BUILD is None:
        import atexit

        _BUILD = workdir("gearmgr-bench-build-")
        atexit.register(shutil.rmtree, _BUILD, True)
    return _BUILD


def compile_c(name: str) -> Path:
    """Compile bench/NAME.c against libgearman into a temp build dir (once per run)."""
    out = build_dir() / name
    if not out.exists():
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(out), str(BENCH / f"{name}.c"), "-lgearman"],
            check=True,
        )
    return out


NOOP_WORKER = '''"""A no-op worker function (benchmarks)."""


def {name}(job):
    return None
'''


def write_noop_worker(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(NOOP_WORKER.format(name=name))
    return path


def worker_command(kind: str, address: str, function: str) -> tuple[list[str], dict[str, str]]:
    """The command line of one worker process of ``kind`` serving ``function``.

    Kinds: ``c`` (libgearman, bench/cworker.c), ``php`` (pecl gearman, bench/php_worker.php),
    ``gearmgr`` (bench/gm_worker.py: gearmgr.worker.Worker as a forked child runs it: the no-op
    function loaded from a worker file, a scoreboard slot, process titles). ``gearmgr-bare`` is
    the same worker without the scoreboard and the titles: what reporting to the supervisor
    costs; ``gearmgr-pure`` the same worker without its C extension (GEARMGR_PURE_PYTHON=1).
    ``gearmgr@DIR`` runs the same with DIR first on PYTHONPATH (to compare a patched copy of the
    package side by side).
    """
    host, port_number = parse_address(address)
    port = str(port_number)
    env = dict(os.environ)
    if kind == "c":
        return [str(compile_c("cworker")), host, port, function], env
    if kind == "php":
        return ["php", str(BENCH / "php_worker.php"), host, port, function], env
    if kind.startswith("gearmgr"):
        _, _, alt = kind.partition("@")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (alt, str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        bare = ["--bare"] if kind.partition("@")[0] == "gearmgr-bare" else []
        if kind.partition("@")[0] == "gearmgr-pure":  # without the C extension
            env["GEARMGR_PURE_PYTHON"] = "1"
        return [PY, str(BENCH / "gm_worker.py"), address, function, *bare], env
    raise ValueError(f"unknown worker kind {kind!r}")


class Pool:
    """``n`` worker processes of one kind serving one function, started, registered, SIGSTOPped."""

    def __init__(self, kind: str, n: int, gearmand: Gearmand, function: str) -> None:
        self.kind, self.n, self.gearmand, self.function = kind, n, gearmand, function
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> Pool:
        cmd, env = worker_command(self.kind, self.gearmand.address, self.function)
        for _ in range(self.n):
            # A session of their own: a SIGHUP/SIGCONT sent to the bench's process group (its
            # shell exiting) must not wake pools the benchmark keeps stopped.
            self.procs.append(
                subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
            )
        self.gearmand.wait_workers(self.function, self.n)
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def pause(self) -> None:
        signal_all(self.pids, signal.SIGSTOP)

    def resume(self) -> None:
        signal_all(self.pids, signal.SIGCONT)

    def cpu(self) -> float:
        return sum(threads_cpu(pid) for pid in self.pids)

    def stop(self) -> None:
        signal_all(self.pids, signal.SIGCONT)
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def kill_tree(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    if proc is None or proc.poll() is not None:
        return
    for child in children_of(proc.pid):
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass
    proc.send_signal(sig)
    proc.wait()


class Supervised:
    """``gearmgr run -c CONFIG`` as a subprocess, with a config and worker files in a temp dir."""

    def __init__(
        self, config: dict, functions: Iterable[str] = (), pythonpath: str | None = None
    ) -> None:
        import yaml

        self.dir = workdir("gearmgr-bench-sup-")
        self.workers = self.dir / "workers"
        for name in functions:
            write_noop_worker(self.workers, name)
        self.workers.mkdir(exist_ok=True)
        config = {
            "worker_dirs": ["workers"],
            "control_socket": "gearmgr.sock",
            "log_level": "warning",
            **config,
        }
        self.config_path = self.dir / "gearmgr.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = self.dir / "supervisor.log"
        self.env = dict(os.environ)
        self.env.setdefault("GEARMGR_ALLOW_ROOT", "1")  # benchmarks run as root on the dev VM
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (pythonpath, str(ROOT), self.env.get("PYTHONPATH")) if p
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Supervised:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PY, "-m", "gearmgr", "run", "-c", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.dir,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"supervisor exited: {self.log_path.read_text(errors='replace')[-3000:]}"
            )

    def children(self) -> list[int]:
        return children_of(self.pid)

    def status(self) -> dict:
        from gearmgr.ops.control import request

        return request(self.dir / "gearmgr.sock", "status")

    def worker_pids(self) -> list[int]:
        try:
            return sorted(p["pid"] for p in self.status()["processes"] if p["pid"])
        except Exception:
            return []

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM, wait; return the seconds the stop took."""
        if self.proc is None:
            return 0.0
        took = 0.0
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
                took = time.perf_counter() - t0
            except subprocess.TimeoutExpired:
                took = float("nan")
                kill_tree(self.proc)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return took
