"""Unit: the choice of a job's server (gearmgr/wire/rendezvous.py): stable, minimal movement,
even spread. Pure: no sockets."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from gearmgr.wire.rendezvous import Rendezvous, canonical, routing_key

SERVERS = ["gm1:4730", "gm2:4730", "gm3:4730"]
KEYS = [f"job-{i}".encode() for i in range(20_000)]


def homes(servers: list[str], keys: list[bytes] = KEYS) -> dict[bytes, str]:
    ring = Rendezvous(servers)
    return {key: ring.home(key) for key in keys}


def test_every_server_appears_once_in_every_order() -> None:
    ring = Rendezvous([*SERVERS, "gm1:4730"])  # a duplicate is dropped
    for key in KEYS[:200]:
        order = ring.order(key)
        assert sorted(order) == sorted(SERVERS)


def test_the_order_does_not_depend_on_how_the_servers_are_listed() -> None:
    listed = homes(SERVERS, KEYS[:2000])
    assert homes(list(reversed(SERVERS)), KEYS[:2000]) == listed
    assert homes(["gm2:4730", "gm3:4730", "gm1:4730"], KEYS[:2000]) == listed


def test_a_server_is_the_same_however_its_address_is_spelled() -> None:
    assert canonical("GM1") == canonical("gm1:4730") == "gm1:4730"
    assert canonical("[::1]:4731") == canonical("[::1]:4731") == "[::1]:4731"
    assert canonical("::1") == "[::1]:4730"
    spelled = homes(["GM1", "gm2", "gm3:4730"], KEYS[:500])
    assert {key: canonical(server) for key, server in spelled.items()} == homes(SERVERS, KEYS[:500])


# Pinned: clients of two gearmgr versions side by side (a rolling deploy) must send a unique id
# to the same server, or its copies stop meeting. Change these only with a release note.
PINNED = {
    b"order-1": ["gm1:4730", "gm3:4730", "gm2:4730"],
    b"order-2": ["gm3:4730", "gm2:4730", "gm1:4730"],
    b"thumb:7": ["gm2:4730", "gm1:4730", "gm3:4730"],
}


def test_the_order_is_the_same_in_every_process_and_version() -> None:
    ring = Rendezvous(SERVERS)
    for key, order in PINNED.items():
        assert ring.order(key) == order
    code = (
        "from gearmgr.wire.rendezvous import Rendezvous\n"
        f"print(Rendezvous({SERVERS!r}).home(b'thumb:7'))\n"
    )
    for seed in ("1", "2"):  # another process with another str-hash salt
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed},
            check=True,
        )
        assert out.stdout.strip() == "gm2:4730"


@pytest.mark.parametrize("count", [2, 3, 5])
def test_keys_are_spread_evenly(count: int) -> None:
    servers = [f"10.0.0.{i}:4730" for i in range(1, count + 1)]
    shares = Counter(homes(servers).values())
    mean = len(KEYS) / count
    assert set(shares) == set(servers)
    for server, n in shares.items():
        assert abs(n - mean) < 0.05 * mean, f"{server}: {n} keys, {mean:.0f} expected"


def test_adding_a_server_moves_only_the_keys_it_wins() -> None:
    before = homes(SERVERS)
    after = homes([*SERVERS, "gm4:4730"])
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == "gm4:4730" for key in moved)
    assert 0.22 < len(moved) / len(KEYS) < 0.28  # about 1/4; `hash % N` would move about 3/4


def test_losing_a_server_moves_only_its_keys_each_to_its_next_server() -> None:
    ring = Rendezvous(SERVERS)
    orders = {key: ring.order(key) for key in KEYS}
    after = homes(["gm1:4730", "gm3:4730"])
    for key, order in orders.items():
        if order[0] != "gm2:4730":
            assert after[key] == order[0]  # the others stay where they were
        else:
            assert after[key] == order[1]  # where the client fails over to while gm2 is down
    lost = Counter(order[1] for order in orders.values() if order[0] == "gm2:4730")
    assert abs(lost["gm1:4730"] - lost["gm3:4730"]) < 0.1 * sum(lost.values())


def test_routing_keys() -> None:
    assert routing_key(b"order-42", b"data") == b"order-42"
    assert routing_key(b"-", b"the workload") == b"the workload"  # gearmand: data as unique id
    assert routing_key(b"", b"data") is None


def test_jobs_with_nothing_to_meet_spread_at_random() -> None:
    ring = Rendezvous(SERVERS)
    shares = Counter(ring.home(None) for _ in range(3000))
    assert set(shares) == set(SERVERS)
    assert min(shares.values()) > 800


def test_one_server_and_bad_addresses() -> None:
    assert Rendezvous(["gm1"]).order(b"x") == ["gm1"]
    with pytest.raises(ValueError):
        Rendezvous([])
    with pytest.raises(ValueError):
        Rendezvous(["gm1:notaport"])
