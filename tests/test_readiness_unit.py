"""Unit tests: systemd readiness as a state machine driven by ``now`` (no socket, no clock)."""

from __future__ import annotations

import math

from gearmgr.ops.systemd import STATUS_INTERVAL, Phase, Readiness


class FakeNotifier:
    def __init__(self, watchdog_interval: float = 0.0) -> None:
        self.enabled = True
        self.watchdog_interval = watchdog_interval
        self.sent: list[str] = []

    def ready(self, status: str) -> None:
        self.sent.append(f"READY {status}")

    def status(self, status: str) -> None:
        self.sent.append(f"STATUS {status}")

    def stopping(self) -> None:
        self.sent.append("STOPPING")

    def watchdog(self) -> None:
        self.sent.append("WATCHDOG")


def test_ready_is_sent_once_every_process_has_registered_and_status_follows_on_time():
    notifier = FakeNotifier()
    readiness = Readiness(notifier)  # type: ignore[arg-type]
    up = False
    readiness.tick(0.0, lambda: up, lambda: "s0")
    assert readiness.phase is Phase.STARTING and notifier.sent == ["STATUS s0"]
    up = True
    readiness.tick(1.0, lambda: up, lambda: "s1")
    assert readiness.phase is Phase.READY and notifier.sent[-1] == "READY s1"
    readiness.tick(1.0 + STATUS_INTERVAL / 2, lambda: up, lambda: "early")
    assert notifier.sent[-1] == "READY s1"  # nothing due yet
    assert readiness.next_wake() == 1.0 + STATUS_INTERVAL
    readiness.tick(1.0 + STATUS_INTERVAL, lambda: up, lambda: "s2")
    assert notifier.sent[-1] == "STATUS s2"


def test_a_stop_ends_status_updates_but_not_the_watchdog():
    notifier = FakeNotifier(watchdog_interval=2.0)
    readiness = Readiness(notifier)  # type: ignore[arg-type]
    readiness.tick(0.0, lambda: True, lambda: "s")
    readiness.stopping()
    readiness.stopping()  # once only
    assert notifier.sent.count("STOPPING") == 1 and readiness.phase is Phase.STOPPING
    sent = len(notifier.sent)
    readiness.tick(2.0, lambda: True, lambda: "late")
    assert notifier.sent[sent:] == ["WATCHDOG"]
    assert readiness.next_wake() == 4.0


def test_nothing_is_due_outside_systemd():
    notifier = FakeNotifier()
    notifier.enabled = False
    readiness = Readiness(notifier)  # type: ignore[arg-type]
    readiness.tick(0.0, lambda: True, lambda: "s")
    assert notifier.sent == [] and readiness.next_wake() == math.inf
