"""`gearmgr top` driven in a real terminal (tmux, Debian's package): a real gearmand, a real
supervisor, keys typed into the pane, the screen read back with ``capture-pane``; the actions
checked through ``gearmgr status --json`` as an operator would."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearmgr.cli import cells
from gearmgr.ops.control import ControlError, request
from gearmgr.wire.client import Client
from tests.support import Gearmand, RunningSupervisor, wait_for, which

GEARMGR_ARGV = [sys.executable, "-m", "gearmgr"]
GEARMGR = shlex.join(GEARMGR_ARGV)


class Terminal:
    """A tmux server of its own (its own socket, no user config) with one pane running bash."""

    def __init__(self, folder: Path, width: int = 80, height: int = 24, utf8: bool = False) -> None:
        exe = which("tmux")
        assert exe, "tmux is not installed (apt-get install tmux; `make test` does)"
        self.base = [exe, "-S", str(folder / "tmux.sock"), "-f", "/dev/null"] + ["-u"] * utf8
        env = {**os.environ, "TERM": "xterm", "PS1": "$ "}
        if utf8:  # a terminal that shows UTF-8 (a wide character in two cells)
            env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
        self.tmux(
            "new-session", "-d", "-x", str(width), "-y", str(height), "-s", "top",
            "bash --norc --noprofile", env=env,
        )  # fmt: skip

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=20, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, command: str) -> None:
        self.tmux("send-keys", "-t", "top", "-l", command)
        self.tmux("send-keys", "-t", "top", "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def shows(self, *texts: str, timeout: float = 20.0) -> str:
        """Wait until the screen shows every one of ``texts``; the screen."""

        def showing() -> str | None:
            screen = self.screen()
            return screen if all(t in screen for t in texts) else None

        try:
            return wait_for(showing, timeout, 0.1, what=f"{texts} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "top", "-x", str(width), "-y", str(height))

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    yield term
    term.close()


@pytest.fixture
def sup(supervisor_factory, gearmand: Gearmand) -> RunningSupervisor:
    config = {
        "include": ["reverse", "sleepy"],
        "graceful_timeout": "1s",
        "functions": {"sleepy": {"dedicated_count": 2, "max_processes": 4}},
    }
    running = supervisor_factory(config)
    running.wait_ready(gearmand.port, {"reverse": 1, "sleepy": 2})
    return running


def status(sup: RunningSupervisor) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "gearmgr", "status", "--json", "-c", str(sup.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def top(sup: RunningSupervisor, *args: str) -> str:
    return f"{GEARMGR} top -c {shlex.quote(str(sup.config_path))} {' '.join(args)}"


def test_the_frame_shows_every_function_and_process_and_refreshes(
    sup: RunningSupervisor, gearmand: Gearmand, terminal: Terminal
):
    terminal.run(top(sup))
    pids = [str(p["pid"]) for p in status(sup)["processes"]]
    screen = terminal.shows("FUNCTION", "> reverse", "sleepy", *pids)
    assert len(pids) == 3  # reverse's process, sleepy's two
    assert "servers 1 up" in screen
    # The next refreshes show what the workers did: the jobs counted, a job in hand.
    with Client(gearmand.address) as client:
        for _ in range(7):
            assert client.submit("reverse", "abc") == b"cba"
        client.submit("sleepy", "30", background=True)
    (reverse,) = [p["pid"] for p in status(sup)["processes"] if p["functions"] == ["reverse"]]

    def row(pid: int) -> list[str]:
        return next(
            ln.split() for ln in terminal.screen().splitlines() if ln.split()[:1] == [str(pid)]
        )

    wait_for(lambda: row(reverse)[5:6] == ["7"], what="reverse's 7 jobs on the screen")
    busy = wait_for(
        lambda: [ln for ln in terminal.screen().splitlines() if " busy " in ln and " 2s " in ln],
        what="sleepy's job in hand for 2 s",
    )
    assert "sleepy" in busy[0]
    lines = terminal.screen().splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)


def test_keys_pause_resume_and_resize_the_selected_function(
    sup: RunningSupervisor, terminal: Terminal
):
    terminal.run(top(sup))
    terminal.shows("> reverse")  # the first function is selected at start
    terminal.keys("Down")
    terminal.shows("> sleepy")
    terminal.keys("p")
    terminal.shows("p: sleepy paused")
    wait_for(lambda: status(sup)["functions"]["sleepy"]["paused"], what="sleepy paused")
    terminal.shows("paused")
    terminal.keys("p")
    terminal.shows("p: sleepy resumed")
    assert status(sup)["functions"]["sleepy"]["paused"] is False
    terminal.keys("+")
    terminal.shows("+: sleepy: 2..4 -> 3..4 processes")
    wait_for(lambda: status(sup)["functions"]["sleepy"]["min"] == 3, what="floor 3")
    wait_for(
        lambda: sum(1 for p in status(sup)["processes"] if p["functions"] == ["sleepy"]) == 3,
        timeout=20,
        what="a third process of sleepy",
    )
    terminal.keys("-", "-")
    wait_for(lambda: status(sup)["functions"]["sleepy"]["min"] == 1, what="floor 1")
    assert status(sup)["functions"]["sleepy"]["max"] == 4
    terminal.keys("r")
    terminal.shows("r: replacing")
    terminal.keys("Up", "p")
    terminal.shows("p: reverse paused")
    assert status(sup)["functions"]["reverse"]["paused"] is True


def test_resizes_q_quits_and_the_terminal_is_restored(sup: RunningSupervisor, terminal: Terminal):
    terminal.run(top(sup) + "; echo EXIT=$?; stty -a")
    terminal.shows("> reverse")
    terminal.resize(132, 40)
    screen = terminal.shows("SLOT", "sleepy#0")  # the wide layout's column
    assert all(len(line) <= 132 for line in screen.splitlines())
    terminal.resize(80, 24)
    screen = wait_for(
        lambda: "SLOT" not in (s := terminal.screen()) and "> reverse" in s and s,
        what="the frame at 80 columns",
    )
    assert all(len(line) <= 80 for line in screen.splitlines())
    terminal.keys("?")
    terminal.shows("gearmgr top: keys")
    terminal.keys("Escape")
    terminal.shows("> reverse")
    terminal.keys("q")
    screen = terminal.shows("EXIT=0", "icanon")
    assert "-icanon" not in screen and " echo " in screen  # cooked mode again, echo on
    assert "FUNCTION" not in screen  # the alternate screen was left: the shell's own shows
    terminal.run("clear; " + top(sup) + "; echo AGAIN=$?; stty -a")
    terminal.shows("> reverse")
    terminal.keys("C-c")  # ^C quits as q does
    screen = terminal.shows("AGAIN=0", "icanon")
    assert "-icanon" not in screen and "FUNCTION" not in screen


def test_once_prints_one_plain_frame_of_80_columns(sup: RunningSupervisor):
    done = subprocess.run(
        [*GEARMGR_ARGV, "top", "--once", "--interval", "0.2", "-c", str(sup.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gearmgr top  pid ")
    assert all(len(line) <= 80 for line in lines)
    assert "\x1b" not in done.stdout  # plain text, no escape sequences
    for p in status(sup)["processes"]:
        assert any(line.split()[:1] == [str(p["pid"])] for line in lines)
    assert [ln.split()[0] for ln in lines if ln.startswith("  reverse")] == ["reverse"]
    assert any(ln.lstrip().startswith("sleepy") and "2 (2..4)" in ln for ln in lines)
    # The request under it refuses an interval that is not a number of seconds.
    for bad in ("nope", "0", "-1", "nan"):
        with pytest.raises(ControlError, match="top: interval must be a number of seconds > 0"):
            request(sup.workdir / "gearmgr.sock", "top", interval=bad)
    sup.assert_alive()


def test_the_supervisor_down_is_one_line_and_exit_1(tmp_path: Path, terminal: Terminal):
    config = tmp_path / "gearmgr.yaml"
    config.write_text("control_socket: nowhere.sock\n")
    for extra in ([], ["--once"]):
        done = subprocess.run(
            [sys.executable, "-m", "gearmgr", "top", "-c", str(config), *extra],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1
        assert f"no gearmgr is running here: {tmp_path / 'nowhere.sock'}" in done.stderr
    # In a terminal too: the message, and no screen left behind.
    terminal.run(f"{GEARMGR} top -c {config}; echo EXIT=$?")
    terminal.shows("no gearmgr is running here", "EXIT=1")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop its file-access capability")
def test_a_socket_not_permitted_is_one_line_and_exit_1(tmp_path: Path):
    path = tmp_path / "gearmgr.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        os.chown(path, 65534, 65534)  # a supervisor running as nobody: its socket is 0600
        os.chmod(path, 0o600)
        (tmp_path / "gearmgr.yaml").write_text("control_socket: gearmgr.sock\n")
        setpriv = which("setpriv")
        assert setpriv, "setpriv (util-linux) is missing"
        no_override = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
        # root without CAP_DAC_OVERRIDE is held to the socket's mode like any other user
        done = subprocess.run(
            [*no_override, *GEARMGR_ARGV, "top", "-c", str(tmp_path / "gearmgr.yaml")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert done.stderr == (
        f"gearmgr: not permitted to use {path} (mode 0600): run this as the user gearmgr runs as\n"
    )


def test_a_supervisor_that_stops_while_top_runs_is_said_on_the_status_line(
    sup: RunningSupervisor, terminal: Terminal
):
    terminal.run(top(sup, "--interval", "0.5") + "; echo EXIT=$?")
    terminal.shows("> reverse")
    sup.stop()
    terminal.shows("no answer: no gearmgr is running here")
    terminal.shows("> reverse")  # the last frame stays
    terminal.keys("q")
    terminal.shows("EXIT=0")


def test_double_width_function_names_line_up_on_the_screen(
    supervisor_factory, gearmand: Gearmand, workers_dir: Path, tmp_path: Path
):
    # a wide name from a worker file ("😀job" is no valid function name: tests/test_top_cells.py)
    (workers_dir / "报告_生成.py").write_text("def 报告_生成(job):\n    return job.text\n")
    names = ["reverse", "报告_生成"]
    sup = supervisor_factory({"include": names})
    sup.wait_ready(gearmand.port, dict.fromkeys(names, 1))
    (tmp_path / "utf8").mkdir()
    terminal = Terminal(tmp_path / "utf8", utf8=True)
    try:
        terminal.run(top(sup, "--interval", "0.5"))
        rows = lambda: [ln for ln in terminal.screen().splitlines() if "0/1/0" in ln]  # noqa: E731
        wait_for(lambda: len(rows()) == len(names), timeout=30, what="each function's process")
        screen = terminal.shows("> reverse", *names)
        lines = screen.splitlines()
        assert all(cells.width(line) <= 80 for line in lines)
        head = next(ln for ln in lines if "B/I/S" in ln)
        column = cells.width(head[: head.index("B/I/S")])
        for name in names:  # each function's counts under the heading, whatever its width
            row = next(ln for ln in lines if ln[2:].startswith(name))
            assert cells.width(row[: row.index("0/1/0")]) == column, screen
    finally:
        terminal.close()
