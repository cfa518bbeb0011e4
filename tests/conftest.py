"""Shared fixtures: a real gearmand on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Gearmand


@pytest.fixture
def gearmand(tmp_path: Path) -> Iterator[Gearmand]:
    """A fresh gearmand (memory queue, one thread) for one test."""
    server = Gearmand(tmp_path).start()
    yield server
    server.stop()


WORKERS = {
    "reverse": "def reverse(job):\n    return job.text[::-1]\n",
    "counter": (
        "class counter:\n"
        "    def __init__(self):\n"
        "        self.n = 0\n\n"
        "    def run(self, job):\n"
        "        self.n += 1\n"
        "        return str(self.n)\n"
    ),
    "boom": "def boom(job):\n    raise ValueError('bad input: ' + job.text)\n",
    "sleepy": (
        "import time\n\n"
        "def sleepy(job):\n"
        "    time.sleep(float(job.text or '1'))\n"
        "    return 'slept ' + job.text\n"
    ),
    "pid": "import os\n\ndef pid(job):\n    return str(os.getpid())\n",
    "touch": (
        "from pathlib import Path\n\n"
        "def touch(job):\n"
        "    Path(job.text).write_text('done')\n"
        "    return 'ok'\n"
    ),
}


@pytest.fixture
def workers_dir(tmp_path: Path) -> Path:
    """A worker folder with the standard test workers."""
    folder = tmp_path / "workers"
    folder.mkdir()
    for name, code in WORKERS.items():
        (folder / f"{name}.py").write_text(code)
    return folder


@pytest.fixture
def supervisor_factory(tmp_path: Path, gearmand: Gearmand, workers_dir: Path):
    """Start ``gearmgr run`` subprocesses against the test gearmand; stopped at teardown."""
    from tests.support import RunningSupervisor

    started: list[RunningSupervisor] = []

    def start(config: dict, env: dict[str, str] | None = None) -> RunningSupervisor:
        config = {"servers": [gearmand.address], "worker_dirs": ["workers"], **config}
        sup = RunningSupervisor(tmp_path, config, env).start()
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.stop()
