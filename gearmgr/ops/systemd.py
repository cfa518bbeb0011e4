"""systemd notifications (``Type=notify``): READY=1, STATUS=, STOPPING=1, WATCHDOG=1.

sd_notify is a datagram to the unix socket named by ``$NOTIFY_SOCKET``; a dozen lines of
stdlib, so no dependency on python-systemd.
"""

from __future__ import annotations

import enum
import math
import os
import socket
from collections.abc import Callable


class Notifier:
    """Sends notifications when running under systemd; does nothing otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog = usec.isdigit() and (not pid or pid == str(os.getpid()))
        #: seconds between WATCHDOG=1 pings: half the interval systemd expects
        self.watchdog_interval = int(usec) / 2e6 if watchdog else 0.0
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *states: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(states).encode(), self.address)
        except OSError:
            pass

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


STATUS_INTERVAL = 5.0  # seconds between STATUS= updates


class Phase(enum.Enum):
    """Where the service is in systemd's eyes."""

    STARTING = "starting"  # READY=1 not sent yet: processes still loading and registering
    READY = "ready"  # READY=1 sent; STATUS= every STATUS_INTERVAL, WATCHDOG=1 on time
    STOPPING = "stopping"  # STOPPING=1 sent; only the watchdog goes on


class Readiness:
    """systemd's view of the supervisor as a small state machine driven by ``now``:

    STARTING --(every planned process registered)--> READY --(a stop begins)--> STOPPING
    STARTING --(a stop begins)--> STOPPING

    Each call of :meth:`tick` sends what is due; :meth:`next_wake` says when the next thing is
    due, so the loop's wait includes it. Nothing here reads the clock."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.phase = Phase.STARTING
        self._next_status = 0.0
        self._next_watchdog = 0.0

    def tick(self, now: float, registered: Callable[[], bool], summary: Callable[[], str]) -> None:
        """``registered``: whether every planned process is up (asked only while STARTING);
        ``summary``: the one-line STATUS= text (built only when it is sent)."""
        if not self.notifier.enabled:
            return
        if self.phase is Phase.STARTING and registered():
            self.phase = Phase.READY
            self.notifier.ready(summary())
            self._next_status = now + STATUS_INTERVAL
        if self.phase is not Phase.STOPPING and now >= self._next_status:
            self.notifier.status(summary())
            self._next_status = now + STATUS_INTERVAL
        if self.notifier.watchdog_interval and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + self.notifier.watchdog_interval

    def stopping(self) -> None:
        if self.phase is not Phase.STOPPING:
            self.phase = Phase.STOPPING
            self.notifier.stopping()

    def next_wake(self) -> float:
        """When :meth:`tick` next has something to send (infinity: nothing)."""
        if not self.notifier.enabled:
            return math.inf
        wake = self._next_status if self.phase is not Phase.STOPPING else math.inf
        if self.notifier.watchdog_interval:
            wake = min(wake, self._next_watchdog)
        return wake
