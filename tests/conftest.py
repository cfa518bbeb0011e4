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
