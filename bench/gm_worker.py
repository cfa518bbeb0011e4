"""One gearmgr worker process for the benchmarks, set up the way a forked child runs it
(gearmgr/worker/child.py): the function loaded from a worker file, a scoreboard slot,
process titles.

    python bench/gm_worker.py HOST:PORT FUNCTION [--profile FILE | --bare] [--fail]
                              [--records DB]

The worker file is a no-op (``def FUNCTION(job): return None``) written to a temp folder;
with ``--fail`` it raises instead, and ``--records DB`` records each failed job in the SQLite
file DB (``failed_jobs``), for bench/failed_jobs.py.
``--profile FILE`` runs the loop under cProfile and dumps the stats to FILE on SIGTERM.
``--bare`` runs it without a scoreboard slot and process titles, to measure what reporting to
the supervisor costs on the job path.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
from pathlib import Path

from gearmgr.discovery import load_handler
from gearmgr.scoreboard import Scoreboard

try:  # the poison-job list a supervised worker screens its jobs against (issue 14)
    from gearmgr.failures.quarantine import QuarantineBoard
except ImportError:  # a package from before it
    QuarantineBoard = None  # type: ignore[assignment,misc]

try:
    from gearmgr.worker.child import set_title
    from gearmgr.worker.loop import Worker
except ImportError:  # a package of the flat layout (before 2026-12), for bench/versions.py
    from gearmgr.child import set_title  # type: ignore[no-redef]

    from gearmgr.worker import Worker  # type: ignore[no-redef]


def main() -> int:
    address, function = sys.argv[1], sys.argv[2]
    profile = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--profile" else None
    bare = "--bare" in sys.argv[3:]
    folder = Path(tempfile.mkdtemp(prefix="gearmgr-bench-worker-"))
    path = folder / f"{function}.py"
    body = "raise ValueError('no')" if "--fail" in sys.argv[3:] else "return None"
    path.write_text(f"def {function}(job):\n    {body}\n")
    handler = load_handler(function, path)
    path.unlink()
    folder.rmdir()
    scoreboard = None if bare else Scoreboard(capacity=1)
    extra = {}
    takes = inspect.signature(Worker).parameters
    if QuarantineBoard is not None and "quarantine" in takes and not bare:  # as run_child does
        extra = {"quarantine": QuarantineBoard()}
    if "--records" in sys.argv[3:]:
        from gearmgr.failures.store import RecordSettings

        extra["records"] = RecordSettings(sys.argv[sys.argv.index("--records") + 1])
    worker = Worker(
        [address],
        {function: handler},
        scoreboard=scoreboard,
        slot=0,
        parent_pid=os.getppid(),
        title=None if bare else set_title,
        counters=[function],
        **extra,  # type: ignore[arg-type]
    )
    if profile is None:
        return worker.run()
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        return worker.run()
    finally:
        prof.disable()
        prof.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main())
