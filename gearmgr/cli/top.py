"""``gearmgr top``: a live full-screen view of the running supervisor, with keys that act.

Every refresh is one ``top`` request on the control socket (the supervisor answers from its
scoreboard, ``ops/top.py``); every key that acts sends the same request as the CLI command
(``pause``, ``resume``, ``scale``, ``restart``) and shows the answer on the status line. The
frame itself is drawn by ``cli/topframe.py``, which knows nothing of terminals.

The stdlib's curses is enough: one window, redrawn whole each refresh (curses sends only what
changed), ``getch`` with a timeout as the loop's clock, and KEY_RESIZE for SIGWINCH.
``curses.wrapper`` restores the terminal on every way out, an exception included.
"""

from __future__ import annotations

import argparse
import curses
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from gearmgr.cli import cells
from gearmgr.cli import topframe as tf
from gearmgr.errors import ExitCode
from gearmgr.ops.control import ControlError, request
from gearmgr.words import plural

ACTION_WAIT = 10.0  # seconds an action may take to be answered
REFRESH_WAIT = 5.0
MIN_INTERVAL, MAX_INTERVAL = 0.1, 3600.0  # --interval: no request storm, no frozen screen


def fetch(path: Path, interval: float) -> dict[str, Any]:
    return request(path, "top", wait=REFRESH_WAIT, interval=f"{interval:g}")


def run(path: Path, args: argparse.Namespace) -> int:
    """``gearmgr top``: exit 0 on ``q``, 1 when the supervisor cannot be reached at start."""
    interval: float = args.interval
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        print(
            f"gearmgr: top --interval: expected {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds,"
            f" got {interval:g}",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        answer = fetch(path, interval)
        if args.once:  # a second look one interval later: the rates need two
            time.sleep(interval)
            answer = fetch(path, interval)
    except ControlError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return ExitCode.FATAL
    if args.once:
        print(tf.plain(answer, 80))
        return ExitCode.OK
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("gearmgr: top needs a terminal; --once prints one frame as text", file=sys.stderr)
        return ExitCode.FATAL
    os.environ.setdefault("ESCDELAY", "25")  # a lone ESC is not the start of a sequence
    # TERM and HUP end top through curses.wrapper's clean-up too (the terminal restored)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _leave)
    try:
        return int(curses.wrapper(lambda screen: Top(screen, path, interval, answer).loop()))
    except KeyboardInterrupt:  # ^C: a quit like q
        return ExitCode.OK
    except curses.error as exc:  # no usable terminal description ($TERM)
        print(
            f"gearmgr: top cannot drive this terminal (TERM={os.environ.get('TERM')}): {exc}",
            file=sys.stderr,
        )
        return ExitCode.FATAL


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(ExitCode.FATAL)


class Top:
    """The screen and its keys."""

    def __init__(
        self, screen: curses.window, path: Path, interval: float, answer: dict[str, Any]
    ) -> None:
        self.screen = screen
        self.path = path
        self.interval = interval
        self.answer = answer
        names = tf.order(answer, "name")
        self.view = tf.View(selected=names[0] if names else None)
        self.next_refresh = time.monotonic() + interval
        self.styles = _styles()

    def loop(self) -> int:
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        self.screen.keypad(True)
        self.draw()
        while True:
            wait = self.next_refresh - time.monotonic()
            self.screen.timeout(max(0, int(wait * 1000)))
            key = self.screen.getch()
            if key in (ord("q"), ord("Q")):
                return ExitCode.OK
            if key != -1:
                self.key(key)
            if time.monotonic() >= self.next_refresh:
                self.refresh()
            self.draw()

    def refresh(self) -> None:
        self.next_refresh = time.monotonic() + self.interval
        try:
            self.answer = fetch(self.path, self.interval)
        except ControlError as exc:
            self.say(f"no answer: {exc}", alert=True)
            return
        names = tf.order(self.answer, self.view.sort)
        if self.view.selected not in names:
            self.view.selected = names[0] if names else None
        if self.view.alert and self.view.message.startswith("no answer"):
            self.say("")

    def say(self, message: str, alert: bool = False) -> None:
        self.view.message, self.view.alert = message, alert

    def key(self, key: int) -> None:
        view = self.view
        if view.help:
            view.help = False
            return
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            return
        names = tf.order(self.answer, view.sort)
        moves = {curses.KEY_UP: -1, ord("k"): -1, curses.KEY_DOWN: 1, ord("j"): 1}
        if key in moves and names:
            at = names.index(view.selected) if view.selected in names else 0
            view.selected = names[max(0, min(len(names) - 1, at + moves[key]))]
        elif key in (curses.KEY_HOME, curses.KEY_END) and names:
            view.selected = names[0 if key == curses.KEY_HOME else -1]
        elif key == ord("?"):
            view.help = True
        elif key == ord("s"):
            view.sort = tf.SORTS[(tf.SORTS.index(view.sort) + 1) % len(tf.SORTS)]
            self.say(f"sorted by {view.sort}")
        elif key in (ord("p"), ord("+"), ord("="), ord("-"), ord("r")) and view.selected:
            self.act(chr(key), view.selected)
        elif key == 12:  # ^L: redraw everything
            self.screen.clear()

    def act(self, key: str, name: str) -> None:
        """One action on the selected function, through the control socket."""
        f = self.answer.get("functions", {}).get(name, {})
        try:
            if key == "r":
                answer = request(self.path, "restart", wait=ACTION_WAIT, function=name)
                self.say(f"r: replacing {plural(int(answer['processes']), 'process')} of {name}")
            elif key == "p":
                command = "resume" if f.get("paused") else "pause"
                answer = request(self.path, command, wait=ACTION_WAIT, function=name)
                self.say(f"p: {answer['changed']}")
            else:
                if "min" not in f:
                    self.say(f"{name}: no pool to resize", alert=True)
                    return
                low, high = scaled(f["min"], f["max"], 1 if key in "+=" else -1)
                answer = request(
                    self.path, "scale", wait=ACTION_WAIT, function=name, min=str(low), max=str(high)
                )
                self.say(f"{key}: {answer['changed']}")
        except ControlError as exc:
            self.say(f"{key}: {exc}", alert=True)
        self.refresh()

    def draw(self) -> None:
        height, width = self.screen.getmaxyx()
        self.screen.erase()
        for y, (text, style) in enumerate(tf.render(self.answer, width, height, self.view)):
            # the bottom-right cell cannot be written without scrolling: leave it
            last = y == height - 1
            try:
                self.screen.addstr(
                    y, 0, cells.cut(text, width - 1) if last else text, self.styles[style]
                )
            except curses.error:
                pass
        self.screen.noutrefresh()
        curses.doupdate()


def scaled(low: int, high: int, step: int) -> tuple[int, int]:
    """The new (floor, ceiling) for ``+`` (step 1) or ``-`` (step -1): the floor moves by one
    within 0..ceiling, the ceiling rising with it when needed; a fixed pool (floor = ceiling)
    moves as a whole."""
    fixed = low == high
    low = max(0, low + step)
    high = low if fixed else max(high, low)
    return low, high


def _styles() -> dict[int, int]:
    alert = curses.A_BOLD
    if curses.has_colors():
        try:
            curses.use_default_colors()
            curses.init_pair(1, curses.COLOR_RED, -1)
            alert = curses.color_pair(1) | curses.A_BOLD
        except curses.error:
            pass
    return {
        tf.PLAIN: curses.A_NORMAL,
        tf.TITLE: curses.A_BOLD,
        tf.HEADER: curses.A_UNDERLINE,
        tf.SELECTED: curses.A_REVERSE,
        tf.MARKED: curses.A_BOLD,
        tf.ALERT: alert,
        tf.STATUS: curses.A_REVERSE,
    }
