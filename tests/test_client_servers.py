"""Integration: `Client` with several real gearmand: jobs spread by unique id, a unique id meets
its earlier copies, failover in hash order, and status asked of the server that created a job.

Each gearmand gets its own handle prefix (``--job-handle-prefix``), so a handle tells which
server created the job.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearmgr.wire.client import Client, ServerUnavailable
from gearmgr.wire.protocol import REQ, RES, Decoder, encode
from gearmgr.wire.protocol import PacketType as T
from gearmgr.wire.rendezvous import Rendezvous
from tests.support import Gearmand, admin, free_port, unique_homed_at, wait_for


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Gearmand, Gearmand]]:
    first = Gearmand(tmp_path, handle_prefix="one").start()
    second = Gearmand(tmp_path, handle_prefix="two").start()
    yield first, second
    first.stop()
    second.stop()


def server_of(handle: str, pair: tuple[Gearmand, Gearmand]) -> Gearmand:
    return pair[0] if handle.startswith("one:") else pair[1]


def test_jobs_without_a_unique_id_spread_over_the_servers(
    pair: tuple[Gearmand, Gearmand],
) -> None:
    with Client([s.address for s in pair], timeout=10) as client:
        handles = [client.submit("queued", b"x", background=True) for _ in range(200)]
    shares = Counter(server_of(h, pair).port for h in handles)
    assert 60 <= shares[pair[0].port] <= 140, shares  # 100 expected; 500/0 before issue 16
    # each one queued where its handle says, nowhere else
    assert [s.status()["queued"][0] for s in pair] == [shares[s.port] for s in pair]


def test_each_job_goes_to_the_home_of_its_unique_id(pair: tuple[Gearmand, Gearmand]) -> None:
    servers = [s.address for s in pair]
    ring = Rendezvous(servers)
    with Client(servers, timeout=10) as client:
        for i in range(40):
            unique = f"order-{i}"
            handle = client.submit("queued", b"x", background=True, unique=unique)
            assert server_of(handle, pair).address == ring.home(unique.encode())


def test_a_unique_id_meets_its_earlier_copy_from_another_client(
    pair: tuple[Gearmand, Gearmand],
) -> None:
    servers = [s.address for s in pair]
    # listed in another order, with the port left out where it is the default: the same choice
    with Client(servers, timeout=10) as one, Client(servers[::-1], timeout=10) as two:
        for i in range(10):
            first = one.submit("queued", b"a", background=True, unique=f"thumb:{i}")
            again = two.submit("queued", b"b", background=True, unique=f"thumb:{i}")
            assert first == again  # coalesced by gearmand: one job
    assert sum(s.status()["queued"][0] for s in pair) == 10
    uniques = [set(admin(s.port, "show unique jobs")) for s in pair]
    assert uniques[0] | uniques[1] == {f"thumb:{i}" for i in range(10)}
    assert uniques[0] and uniques[1], "ten unique ids should not all hash to one server"


def test_the_data_routes_a_job_whose_unique_id_is_a_dash(
    pair: tuple[Gearmand, Gearmand],
) -> None:
    servers = [s.address for s in pair]
    ring = Rendezvous(servers)
    with Client(servers, timeout=10) as client:
        for i in range(10):
            data = f"payload {i}".encode()
            handle = client.submit("queued", data, background=True, unique="-")
            assert server_of(handle, pair).address == ring.home(data)
            # gearmand coalesces "-" jobs by their data: the copy lands on the same server
            assert client.submit("queued", data, background=True, unique="-") == handle


def test_a_dead_home_sends_its_jobs_to_the_next_server_and_only_those(
    pair: tuple[Gearmand, Gearmand], tmp_path: Path
) -> None:
    first, second = pair
    servers = [first.address, second.address]
    ring = Rendezvous(servers)
    first.stop()
    with Client(servers, timeout=10) as client:
        handles = [client.submit("queued", b"x", background=True) for _ in range(30)]
        assert all(h.startswith("two:") for h in handles)  # none dropped, none raised
        # jobs homed at the live server never tried the dead one: its error is recorded once
        assert second.status()["queued"][0] == 30
        restarted = Gearmand(tmp_path, port=first.port, handle_prefix="one").start()
        try:
            # after RETRY_DELAY the home is tried first again
            unique = unique_homed_at(first.address, servers)
            wait_for(
                lambda: client.submit("queued", b"y", background=True, unique=unique).startswith(
                    "one:"
                ),
                timeout=10,
                interval=0.3,
                what="jobs to go home again",
            )
            assert ring.home(unique.encode()) == first.address
        finally:
            restarted.stop()


def test_server_unavailable_names_every_server_tried(pair: tuple[Gearmand, Gearmand]) -> None:
    servers = [s.address for s in pair]
    for server in pair:
        server.stop()
    with Client(servers, timeout=10) as client, pytest.raises(ServerUnavailable) as info:
        client.submit("queued", b"x", background=True)
    assert set(info.value.errors) == set(servers)
    for server in servers:
        assert server in str(info.value)


def test_one_server_spelled_several_ways_is_tried_once() -> None:
    # "localhost", "LOCALHOST:PORT" and "localhost:PORT" are one server (rendezvous.canonical):
    # listed once, so a dead one costs one failed connection per job, not one per spelling.
    port = free_port()
    spellings = f"localhost:{port}, LOCALHOST:{port},localhost:{port}"
    with Client(spellings, timeout=10) as client, pytest.raises(ServerUnavailable) as info:
        client.submit("queued", b"x", background=True)
    assert client.servers == [f"localhost:{port}"]
    assert list(info.value.errors) == [f"localhost:{port}"]
    assert Client(["gm1", "gm1:4730", "GM1"]).servers == ["gm1"]


@pytest.mark.parametrize("servers", [b"gm1:4730", ["gm1", 4730], [None]])
def test_servers_that_are_not_text_are_a_type_error_naming_the_entry(servers) -> None:
    with pytest.raises(TypeError, match=r"servers: expected addresses as text \(str\), got"):
        Client(servers)


def test_a_background_submit_waits_for_job_created(pair: tuple[Gearmand, Gearmand]) -> None:
    # The job's home reads the SUBMIT and closes without JOB_CREATED: the job is not taken, so
    # the client must not return a handle for it; it goes to the next server.
    real = pair[1]
    taker = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{taker.getsockname()[1]}"
    seen: list[bytes] = []  # unique ids of the submits it read

    def take_and_drop() -> None:
        for _ in range(2):  # the client retries once on a connection it had open before
            try:
                conn, _ = taker.accept()
            except OSError:
                return
            with conn:
                decoder = Decoder(expect=REQ)
                while chunk := conn.recv(65536):
                    packets = decoder.feed(chunk)
                    if any(p.type == T.OPTION_REQ for p in packets):
                        conn.sendall(encode(T.OPTION_RES, b"exceptions", magic=RES))
                    submits = [p.args[1] for p in packets if p.type == T.SUBMIT_JOB_BG]
                    if submits:
                        seen.extend(submits)
                        break  # closed without JOB_CREATED

    thread = threading.Thread(target=take_and_drop, daemon=True)
    thread.start()
    try:
        servers = [address, real.address]
        unique = unique_homed_at(address, servers)
        with Client(servers, timeout=10, connect_timeout=2) as client:
            handle = client.submit("queued", b"x", background=True, unique=unique)
        assert handle.startswith("two:")
        assert real.status()["queued"][0] == 1
        assert seen and seen[0] == unique.encode(), "the job's home was tried first"
    finally:
        taker.close()


def test_status_asks_only_the_server_that_created_the_job(
    pair: tuple[Gearmand, Gearmand],
) -> None:
    first, second = pair
    with Client([first.address, second.address], timeout=10) as client:
        handles = [client.submit("queued", b"x", background=True) for _ in range(20)]
        assert all(client.status(h).known for h in handles)
        first.stop()
        for handle in handles:
            if handle.startswith("two:"):
                assert client.status(handle).known  # the dead server is not asked
            else:
                with pytest.raises(ServerUnavailable) as info:
                    client.status(handle)
                assert list(info.value.errors) == [first.address]


def test_the_async_client_chooses_each_jobs_server_as_client_does(
    pair: tuple[Gearmand, Gearmand],
) -> None:
    import asyncio

    from gearmgr.wire.aclient import AsyncClient

    servers = [s.address for s in pair]
    ring = Rendezvous(servers)

    async def submit_all() -> tuple[list[str], list[str]]:
        async with AsyncClient(servers, timeout=10) as client:
            homed = [
                await client.submit("queued", b"x", background=True, unique=f"a-{i}")
                for i in range(20)
            ]
            spread = await asyncio.gather(
                *(client.submit("queued", b"x", background=True) for _ in range(100))
            )
        return homed, list(spread)

    homed, spread = asyncio.run(submit_all())
    for i, handle in enumerate(homed):
        assert server_of(handle, pair).address == ring.home(f"a-{i}".encode())
    shares = Counter(server_of(h, pair).port for h in spread)
    assert 25 <= shares[pair[0].port] <= 75, shares  # 50 expected: no unique id, spread
