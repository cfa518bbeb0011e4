"""A client's job servers, shared by :class:`~gearmgr.wire.client.Client` and
:class:`~gearmgr.wire.aclient.AsyncClient`: the list as given (a comma-separated string or a
list; blanks and duplicates dropped, ``gm1``, ``GM1`` and ``gm1:4730`` being one server,
every address checked now), the order in which to try
them for a job (its rendezvous order, :mod:`gearmgr.wire.rendezvous`), and the servers that
failed lately, which are tried after the others for :data:`RETRY_DELAY` seconds so that a dead
server costs one failed connection per delay, not one per call; and which server created each
background job (the last :data:`MAX_REMEMBERED_HANDLES`), where ``status`` asks about it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from gearmgr.wire.rendezvous import Rendezvous, canonical, routing_key

__all__ = ["MAX_REMEMBERED_HANDLES", "RETRY_DELAY", "ServerChoice", "server_list"]

#: Seconds a server that failed is tried after the healthy ones.
RETRY_DELAY = 1.0
#: Background job handles remembered for status(), oldest dropped first.
MAX_REMEMBERED_HANDLES = 10_000


def server_list(servers: str | Iterable[str]) -> list[str]:
    """``"gm1:4730, gm2"`` or ``["gm1:4730", "gm2"]`` -> the servers, in order, each once (as
    first spelled).
    Raises ValueError for none, or for an address that is not ``HOST[:PORT]``; TypeError for
    an entry that is not a str."""
    if isinstance(servers, str):
        servers = servers.split(",")
    elif isinstance(servers, (bytes, bytearray)):
        servers = [servers]  # type: ignore[list-item]  # named by the check below
    servers = list(servers)
    for server in servers:
        if not isinstance(server, str):
            raise TypeError(f"servers: expected addresses as text (str), got {server!r:.80}")
    first: dict[str, str] = {}  # canonical name -> the first spelling listed
    for server in (s.strip() for s in servers):
        if server:
            first.setdefault(canonical(server), server)  # ValueError for a bad address
    listed = list(first.values())
    if not listed:
        raise ValueError("at least one job server is needed")
    return listed


class ServerChoice:
    """Which server to try first, then next, for each job; ``clock`` is injected by tests."""

    def __init__(
        self, servers: str | Iterable[str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.servers = server_list(servers)
        self._rendezvous = Rendezvous(self.servers)  # ValueError for a bad address, now
        self._failed_at: dict[str, float] = {}
        self._clock = clock
        self._created: OrderedDict[str, str] = OrderedDict()  # handle -> its server

    def for_job(self, unique: bytes, payload: bytes) -> list[str]:
        """The servers to try for a job: its hash order, those that failed lately last."""
        return self.ordered(self._rendezvous.order(routing_key(unique, payload)))

    def ordered(self, servers: list[str]) -> list[str]:
        """``servers`` in their order, those that failed lately moved last (a stable sort)."""
        now, failed = self._clock(), self._failed_at
        return sorted(servers, key=lambda s: now - failed.get(s, -1e9) < RETRY_DELAY)

    def failed(self, server: str) -> None:
        self._failed_at[server] = self._clock()

    def answered(self, server: str) -> None:
        self._failed_at.pop(server, None)

    def created(self, handle: str, server: str) -> None:
        """``server`` created the background job ``handle``."""
        self._created[handle] = server
        self._created.move_to_end(handle)
        while len(self._created) > MAX_REMEMBERED_HANDLES:
            self._created.popitem(last=False)

    def creator(self, handle: str) -> str | None:
        """The server that created ``handle`` (None: not one of the last remembered)."""
        return self._created.get(handle)

    def forget(self, handle: str) -> None:
        self._created.pop(handle, None)
