"""Unit tests: the supervisor's request listeners never block its loop."""

from __future__ import annotations

import selectors
import socket
import time

from gearmgr.ops.listener import Listener
from tests.support import free_port


class Echo(Listener):
    """Answers a line with a large body."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        super().__init__(sock)
        self.size = size

    def complete(self, data: bytes) -> bool:
        return b"\n" in data

    def answer(self, data: bytes, reply) -> bytes:
        return b"x" * self.size

    def error_answer(self, message: str) -> bytes:
        return message.encode()


def serve(listener: Listener, selector: selectors.BaseSelector, until) -> float:
    """Run the selector like the supervisor's loop; return the longest single step."""
    longest = 0.0
    deadline = time.monotonic() + 10
    while not until() and time.monotonic() < deadline:
        for key, _ in selector.select(0.05):
            started = time.monotonic()
            key.data.ready(key.fileobj)
            longest = max(longest, time.monotonic() - started)
        listener.sweep(time.monotonic())
    return longest


def test_a_client_that_reads_slowly_gets_its_whole_answer_without_blocking_the_loop():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    size = 8 << 20  # far more than a socket buffer holds
    listener = Echo(server, size)
    selector = selectors.DefaultSelector()
    listener.attach(selector)
    client = socket.create_connection(server.getsockname())
    client.sendall(b"give\n")
    serve(
        listener, selector, lambda: listener._pending and next(iter(listener._pending.values())).out
    )
    received = bytearray()
    client.setblocking(False)

    def drained() -> bool:
        while True:
            try:
                chunk = client.recv(1 << 16)
            except BlockingIOError:
                return False
            if not chunk:
                return True
            received.extend(chunk)

    longest = serve(listener, selector, drained)
    assert len(received) == size
    assert longest < 0.5, f"one step of the loop took {longest:.2f}s"
    client.close()
    listener.close()


def test_a_silent_client_is_dropped_after_the_request_timeout(monkeypatch):
    import gearmgr.ops.listener as mod

    monkeypatch.setattr(mod, "REQUEST_TIMEOUT", 0.2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    listener = Echo(server, 10)
    selector = selectors.DefaultSelector()
    listener.attach(selector)
    client = socket.create_connection(server.getsockname())
    serve(listener, selector, lambda: bool(listener._pending))
    serve(listener, selector, lambda: not listener._pending)
    assert not listener._pending
    client.settimeout(2)
    assert client.recv(10) == b""  # closed without an answer
    client.close()
    listener.close()


def test_metrics_scraped_in_a_loop_are_rendered_at_most_once_a_quarter_second():
    from gearmgr.ops.metrics import RENDER_EVERY, MetricsServer

    renders = []

    class Collector:
        def collect(self):
            from prometheus_client.core import GaugeMetricFamily

            renders.append(1)
            yield GaugeMetricFamily("gearmgr_test", "a test", value=len(renders))

    clock = [100.0]
    address = f"127.0.0.1:{free_port()}"
    server = MetricsServer(address, Collector(), clock=lambda: clock[0])  # type: ignore[arg-type]
    try:
        get = b"GET /metrics HTTP/1.0\r\n\r\n"
        first = server.answer(get, None)  # type: ignore[arg-type]
        assert b"200 OK" in first and b"gearmgr_test 1.0" in first
        for _ in range(1000):  # a client scraping in a loop
            assert server.answer(get, None) is first  # type: ignore[arg-type]
        assert len(renders) == 1
        clock[0] += RENDER_EVERY
        assert b"gearmgr_test 2.0" in server.answer(get, None)  # type: ignore[arg-type]
        assert len(renders) == 2
    finally:
        server.close()
