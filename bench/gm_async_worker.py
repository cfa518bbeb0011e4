"""One gearmgr asyncio worker process for the benchmarks (gearmgr.worker.aio.AsyncWorker, as
a forked child of `gearmgr run` runs it: a scoreboard slot, process titles).

    python bench/gm_async_worker.py HOST:PORT FUNCTION CONCURRENCY [--sleep SECONDS]

The function is ``async def FUNCTION(job)`` that returns at once (a no-op), or awaits
``asyncio.sleep(SECONDS)`` first (an I/O-bound job).
"""

from __future__ import annotations

import asyncio
import os
import sys

from gearmgr.scoreboard import Scoreboard
from gearmgr.worker.aio import AsyncWorker
from gearmgr.worker.child import set_title


def main() -> int:
    address, function, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sleep = float(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--sleep" else 0.0

    async def noop(job: object) -> None:
        return None

    async def nap(job: object) -> None:
        await asyncio.sleep(sleep)

    worker = AsyncWorker(
        [address],
        {function: nap if sleep else noop},
        concurrency=concurrency,
        scoreboard=Scoreboard(capacity=1),
        slot=0,
        parent_pid=os.getppid(),
        title=set_title,
        counters=[function],
    )
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
