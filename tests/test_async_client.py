"""Integration: AsyncClient against a real gearmand and real worker processes: hundreds of
submits in flight on one connection, failures, timeouts, background jobs, failover."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gearmgr import AsyncClient, JobFailed, JobTimeout, ServerUnavailable
from tests.support import Gearmand, free_port, wait_for
from tests.test_async_worker import FAILS, NAP


@pytest.fixture
def served(supervisor_factory, gearmand: Gearmand, workers_dir: Path):
    (workers_dir / "nap.py").write_text(NAP)
    (workers_dir / "fails.py").write_text(FAILS)
    sup = supervisor_factory(
        {
            "include": ["nap", "fails", "reverse"],
            "graceful_timeout": "1s",
            "functions": {"nap": {"concurrency": 100}, "fails": {"concurrency": 8}},
        }
    )
    sup.wait_ready(gearmand.port, {"nap": 1, "fails": 1, "reverse": 1})
    return sup


def test_hundreds_of_submits_in_flight_on_one_connection(served, gearmand: Gearmand):
    async def main() -> tuple[list[bytes | str], float, int]:
        async with AsyncClient([gearmand.address], timeout=30) as client:
            start = time.monotonic()
            results = await asyncio.gather(*(client.submit("nap", "0.3") for _ in range(300)))
            elapsed = time.monotonic() - start
            texts = await asyncio.gather(*(client.submit("reverse", f"a{i}") for i in range(50)))
            assert texts == [f"a{i}"[::-1].encode() for i in range(50)]
            return results, elapsed, len(client._conns)

    results, elapsed, conns = asyncio.run(main())
    assert len(set(results)) == 1  # all served by the one async process
    # 300 jobs of 0.3 s with 100 places: 3 rounds; one at a time they would take 90 s
    assert elapsed < 10, elapsed
    assert conns == 1


def test_failures_and_timeouts_fail_their_own_submit_only(served, gearmand: Gearmand):
    async def main() -> list[object]:
        async with AsyncClient([gearmand.address], timeout=20) as client:
            calls = [client.submit("fails", "bad") for _ in range(20)]
            calls += [client.submit("fails", f"ok{i}") for i in range(20)]
            calls += [client.submit("nap", "30", timeout=0.5) for _ in range(5)]
            calls += [client.submit("nap", "0.1") for _ in range(50)]
            out = await asyncio.gather(*calls, return_exceptions=True)
            # the connection is still good after the timeouts: late packets are dropped
            out.append(await client.submit("reverse", "abc"))
            return out

    out = asyncio.run(main())
    assert all(isinstance(e, JobFailed) and "ValueError: bad input" in str(e) for e in out[:20])
    assert out[20:40] == [f"OK{i}".encode() for i in range(20)]
    assert all(isinstance(e, JobTimeout) for e in out[40:45]), out[40:45]
    assert all(isinstance(r, bytes) and r.isdigit() for r in out[45:95])
    assert out[95] == b"cba"


def test_callbacks_background_status_priorities_and_unique_ids(
    served, gearmand: Gearmand, tmp_path: Path
):
    marker = tmp_path / "bg"

    async def main() -> None:
        warnings: list[bytes] = []
        statuses: list[tuple[int, int]] = []
        async with AsyncClient(gearmand.address) as client:
            got = await client.submit(
                "fails",
                "x",
                priority="high",
                on_warning=warnings.append,
                on_status=lambda n, d: statuses.append((n, d)),
            )
            assert (got, warnings, statuses) == (b"X", [b"careful"], [(1, 2)])
            handle = await client.submit("nap", f"1 {marker}", background=True, priority="low")
            assert isinstance(handle, str) and handle.startswith("H:")
            status = await client.status(handle)
            assert status.known
            # two submits sharing a unique id are one job at the server: both get its result
            a, b = await asyncio.gather(
                client.submit("nap", "0.5", unique="same"),
                client.submit("nap", "0.5", unique="same"),
            )
            assert a == b
            with pytest.raises(ValueError, match="priority"):
                await client.submit("nap", "0", priority="urgent")

    asyncio.run(main())
    wait_for(marker.exists, timeout=10, what="the background job's marker")


def test_failover_to_the_next_server_and_every_server_named_when_none_answers(
    served, gearmand: Gearmand
):
    dead = f"127.0.0.1:{free_port()}"

    async def main() -> None:
        async with AsyncClient([dead, gearmand.address], timeout=10) as client:
            results = await asyncio.gather(*(client.submit("reverse", "ab") for _ in range(20)))
            assert results == [b"ba"] * 20
        other = f"127.0.0.1:{free_port()}"
        async with AsyncClient([dead, other], timeout=10) as client:
            with pytest.raises(ServerUnavailable) as info:
                await client.submit("reverse", "ab")
            assert dead in str(info.value) and other in str(info.value)

    asyncio.run(main())


def test_a_server_that_dies_fails_the_jobs_it_had_created(served, gearmand: Gearmand):
    async def main() -> None:
        async with AsyncClient([gearmand.address], timeout=20) as client:
            pending = [asyncio.ensure_future(client.submit("nap", "30")) for _ in range(10)]
            wait = asyncio.get_running_loop().run_in_executor(
                None,
                lambda: wait_for(
                    lambda: gearmand.status().get("nap", (0, 0, 0))[1] == 10, timeout=10
                ),
            )
            await wait
            gearmand.stop()
            out = await asyncio.gather(*pending, return_exceptions=True)
            assert all("connection lost" in str(e) for e in out), out

    asyncio.run(main())


def test_one_client_serves_one_asyncio_run_after_another(served, gearmand: Gearmand):
    client = AsyncClient([gearmand.address], timeout=10)
    assert asyncio.run(client.submit("reverse", "ab")) == b"ba"
    assert asyncio.run(client.submit("reverse", "cd")) == b"dc"  # a new loop: a new connection
    asyncio.run(client.close())
