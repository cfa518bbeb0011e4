"""Foreground round trips with gearmgr's Client: ``submit`` in a loop (bench/roundtrip.py).

    python bench/gm_client.py HOST:PORT FUNCTION COUNT

Prints: jobs seconds p50_us p90_us p99_us max_us
"""

from __future__ import annotations

import sys
import time

try:
    from gearmgr.wire.client import Client
except ImportError:  # a package of the flat layout (before 2026-12), for bench/versions.py
    from gearmgr.client import Client  # type: ignore[no-redef]


def main() -> int:
    address, function, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = Client([address])
    payload = b"0123456789abcdef"
    submit = client.submit
    clock = time.perf_counter
    lat = []
    t0 = clock()
    for _ in range(n):
        a = clock()
        submit(function, payload)
        lat.append(clock() - a)
    secs = clock() - t0
    lat.sort()
    us = [lat[n // 2], lat[int(n * 0.9)], lat[int(n * 0.99)], lat[-1]]
    print(n, f"{secs:.6f}", *(f"{x * 1e6:.1f}" for x in us))
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
