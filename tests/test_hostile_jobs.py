"""Worker functions that attack the worker they run in (the C loop of a busy worker, and the
Python path): the process lives on, serves its jobs and loses none."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gearmgr import logs
from gearmgr.wire.client import Client
from gearmgr.worker.loop import Worker
from tests.support import Gearmand, function_status, wait_for


@pytest.fixture(autouse=True)
def _keep_the_log_label() -> Iterator[None]:
    """Worker.run() names the process in the log: the other tests expect the label back."""
    label = logs._label.label
    yield
    logs.set_label(label)


def test_a_job_that_closes_the_connection_fd_costs_a_reconnect_not_the_worker(
    gearmand: Gearmand,
):
    calls: list[tuple[str, str]] = []

    def handler(job: Any) -> bytes:
        calls.append((job.text, sys._getframe(1).f_code.co_name))
        if job.text == "10" and [c for c, _ in calls].count("10") == 1:
            os.close(worker.conns[0].sock.fileno())  # type: ignore[union-attr]
        return b"ok"

    with Client([gearmand.address]) as client:
        for i in range(30):
            client.submit("closer", str(i), background=True)
    worker = Worker([gearmand.address], {"closer": handler})
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        # job 10's answer is lost with its connection: gearmand gives it again after the reconnect
        wait_for(lambda: {c for c, _ in calls} == {str(i) for i in range(30)}, 20, what="30 jobs")
        wait_for(lambda: function_status(gearmand.port)["closer"][:2] == (0, 0), 10, what="done")
        assert thread.is_alive()
        assert [c for c, _ in calls].count("10") == 2 and len(calls) == 31
        if worker.conns[0].serve is not None:  # the C extension serves this connection
            assert ("10", "_serve") in calls  # the first run, in the C loop
    finally:
        worker.stop()
        thread.join(10)
