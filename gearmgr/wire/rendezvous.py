"""Which job server a job goes to: rendezvous (highest-random-weight) hashing, pure.

Every server gets a score for the job's routing key, ``blake2b(server + key)``; the servers in
descending score are the job's order: the first is its home, the next the one it fails over to,
and so on. Properties, each pinned by ``tests/test_rendezvous.py``:

* stable: the order depends only on the key and the set of servers, not on the order they are
  listed in nor on the process (``hash()`` is salted per process; blake2b is not), so every
  client with the same servers sends a unique id to the same server, where it meets its
  earlier copies and gearmand coalesces them;
* minimal movement: adding a server moves only the keys it now wins (about 1/N of them), and
  losing one moves only the keys it held, each to its next server; a modulo scheme would move
  almost all of them;
* spread: keys are shared evenly between the servers.

Chosen over a hash ring (consistent hashing) because it needs no virtual nodes to spread evenly
and its state is just the list of servers; over ``hash(key) % N`` for the movement above. The
cost, N short hashes per job, is about a microsecond per server.

Servers are named by their canonical ``host:port`` (the port filled in), so ``gm1`` and
``gm1:4730`` in two clients' lists are the same server. No sockets, no clocks: the synchronous
:class:`~gearmgr.wire.client.Client` and an asyncio client share this module.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from gearmgr.units import parse_address

__all__ = ["Rendezvous", "canonical", "routing_key"]

#: gearmand (and Perl's Gearman::Client) treat the unique id "-" as "use the workload as the
#: unique id": such jobs coalesce by their data, so they are routed by it.
DATA_AS_UNIQUE = b"-"


def canonical(server: str) -> str:
    """A server's name for hashing: ``host:port`` with the default port filled in, host lower
    case (IPv6 in brackets). Raises ValueError for an address that is not ``HOST[:PORT]``."""
    host, port = parse_address(server)
    host = host.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def routing_key(unique: bytes, data: bytes) -> bytes | None:
    """The bytes a job is routed by: its unique id; its workload for ``-`` (gearmand then
    coalesces by the workload); ``None`` for an empty unique id, which gearmand never
    coalesces, so such a job may go anywhere (the caller spreads it)."""
    if unique == DATA_AS_UNIQUE:
        return data
    return unique or None


class Rendezvous:
    """The servers' order for a key; ``servers`` as given (any order, duplicates dropped)."""

    def __init__(self, servers: Iterable[str]) -> None:
        self.servers: list[str] = list(dict.fromkeys(servers))
        if not self.servers:
            raise ValueError("at least one job server is needed")
        # hashed once: each score is then one blake2b over a copy of this state plus the key
        self._seeds = [
            (server, hashlib.blake2b(canonical(server).encode() + b"\0", digest_size=8))
            for server in self.servers
        ]

    def order(self, key: bytes | None) -> list[str]:
        """Every server, the key's home first. ``None``: a fresh random key (spreads jobs that
        have nothing to meet)."""
        if len(self.servers) == 1:
            return list(self.servers)
        if key is None:
            key = uuid.uuid4().bytes
        scored = []
        for index, (server, seed) in enumerate(self._seeds):
            h = seed.copy()
            h.update(key)
            scored.append((h.digest(), index, server))
        scored.sort(reverse=True)
        return [server for _, _, server in scored]

    def home(self, key: bytes | None) -> str:
        """The server a key goes to while every server answers."""
        return self.order(key)[0]
