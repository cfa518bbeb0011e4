"""The optional C extension of the worker's job path (gearmgr/_speedups.c), or None.

None when it was not built (setup.py builds it when a C compiler and Python's headers are
there; see docs/architecture.md) or when ``GEARMGR_PURE_PYTHON=1`` is set in the environment,
which runs the pure-Python reference instead (to compare the two, or to rule the extension out).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("GEARMGR_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("gearmgr._speedups")
    except ImportError:  # not built: the pure-Python versions serve
        return None


speedups = _load()
