"""Several jobs at once on one connection, sans-IO: the session of a process with places.

A process of an ``async def`` function holds up to ``concurrency`` jobs at once (its places).
gearmand allows it: every GRAB_JOB_UNIQ a worker connection sends takes one more job, a dropped
connection re-queues every job it held, and a sleeping connection is sent a single NOOP. The
rules kept here, on top of :class:`~gearmgr.wire.session.ServerSession` (whose registration,
field checks, keep-alive and backoff are reused as they are):

* **never ahead of capacity**: a GRAB reserves a place until its answer comes, so jobs in hand
  plus GRABs unanswered never exceed the places, and the server's ``running`` count is the jobs
  really running (:class:`Places`);
* **after a NOOP, keep grabbing until NO_JOB or full**: a woken connection grabs one job, then
  doubles its window of GRABs in flight with every job it gets (1, 2, 4 ...), so a full queue
  fills every free place within a few round trips while a trickle of jobs costs one NO_JOB per
  wake-up, not one per place;
* a NO_JOB ends the grabbing on that connection: once its last GRAB is answered it sends
  PRE_SLEEP and waits for the NOOP (gearmand answers PRE_SLEEP with a NOOP at once when jobs
  are waiting, so nothing is missed);
* a job failed back (not ours, a bad handle, too big) frees its place without a GRAB: the
  caller's :meth:`Places.fill` decides where the free place goes;
* a job no GRAB asked for (a server pushing jobs) is failed back, never run past the places.

The socket loop (:mod:`gearmgr.worker.aio`) feeds bytes to :meth:`PlacesSession.feed`, runs
the jobs, counts them in :class:`Places` and writes what :meth:`Places.fill` hands out beside
the results, in one write per connection and loop turn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from gearmgr import jitter
from gearmgr.wire.protocol import Packet, PacketType
from gearmgr.wire.session import (
    GRAB,
    JOB_TYPES,
    PRE_SLEEP,
    UP,
    Action,
    Drop,
    Send,
    ServerSession,
)

_NOOP, _NO_JOB = PacketType.NOOP, PacketType.NO_JOB

__all__ = ["Places", "PlacesSession"]


class PlacesSession(ServerSession):
    """A :class:`ServerSession` that may have several GRABs in flight and jobs in hand.

    ``grabs``: GRABs sent and not answered yet; ``window``: how many may be in flight (1 after
    a wake-up, doubled by each job received); ``starved``: a NO_JOB came since the last NOOP,
    so no GRAB goes out until the server wakes the connection again."""

    def __init__(
        self,
        address: str,
        functions: Iterable[str],
        client_id: str,
        jitter: Callable[[float, float], float] = jitter.uniform,
        max_window: int = 1 << 20,
    ) -> None:
        super().__init__(address, functions, client_id, jitter)
        self.register_only = self.register[: -len(GRAB)]  # CAN_DOs without the first GRAB
        self.grabs = 0
        self.window = 1
        self.starved = False
        self.max_window = max_window

    def connected(self, now: float, grab: bool = True) -> Send | None:
        """Registration without a GRAB: the places' owner grabs what is free (:meth:`grab`)."""
        super().connected(now, grab=False)
        self.grabs, self.window, self.starved = 0, 1, False
        return Send(self.register_only) if grab else None

    def lost(self, now: float, why: str) -> float:
        self.grabs, self.window, self.starved, self.pending_sleep = 0, 1, False, False
        return super().lost(now, why)

    def wanted(self) -> int:
        """How many more GRABs this connection may send now (0: down, asleep or starved)."""
        if self.state != UP or self.sleeping or self.starved:
            return 0
        return max(0, self.window - self.grabs)

    def grab(self, n: int) -> bytes:
        """``n`` GRAB_JOB_UNIQ packets, counted as in flight."""
        self.grabs += n
        return GRAB * n

    def packet(self, packet: Packet, now: float, grab: bool = True) -> Action | None:
        """One packet -> at most one action. Jobs come back as ``Run`` (or a reply failing
        them, without a GRAB); NOOP and NO_JOB move the grabbing state; the rest is the base
        session's (ERROR, ECHO_RES, unexpected packets)."""
        ptype = packet.type
        if packet.oversize or ptype in JOB_TYPES:
            if not self.grabs:  # pushed, not grabbed: run, it would go past the places
                args = packet.args
                why = "no GRAB asked for it (the process takes only the jobs it has places for)"
                name = args[1] if len(args) > 1 else b"?"
                return self.reject(args[0] if args else b"", name, why, now, grab=False)
            self.grabs -= 1
            action = super().packet(packet, now, grab=False)
            if type(action) is not Send:  # Run (or Drop): a job came, the window opens
                self.window = min(self.window * 2, self.max_window)
            return self._answered(action)
        if ptype == _NOOP:
            if self.sleeping or self.starved:
                self.sleeping = self.starved = False
                self.window = 1
            return None
        if ptype == _NO_JOB:
            self.grabs = max(0, self.grabs - 1)
            self.starved = True
            return self._answered(None)
        return super().packet(packet, now, grab=False)

    def _answered(self, action: Action | None) -> Action | None:
        """After a GRAB's answer: a starved connection whose GRABs are all answered goes to
        sleep (PRE_SLEEP, sent after ``action``'s bytes)."""
        if self.starved and not self.grabs and not self.sleeping and self.state == UP:
            self.sleeping = True
            if action is None:
                return Send(PRE_SLEEP)
            if type(action) is Send:
                return Send(action.data + PRE_SLEEP)
            self.pending_sleep = True
        return action

    #: set when PRE_SLEEP must follow a Run returned by :meth:`packet` (see :meth:`feed`)
    pending_sleep = False

    def feed(self, data: bytes, now: float, grab: bool = True) -> list[Action]:
        """Bytes from the server -> what to do, in order (see :meth:`packet`), with the
        PRE_SLEEP owed after a Run last (none once the connection is dropped)."""
        out = super().feed(data, now, grab)
        if self.pending_sleep:
            self.pending_sleep = False
            if not (out and type(out[-1]) is Drop):
                out.append(Send(PRE_SLEEP))
        return out


class Places:
    """A process's places over its connections: jobs in hand plus GRABs in flight never
    exceed ``capacity``. ``running`` is the jobs in hand (the caller counts them: ``take``
    when a job starts, ``release`` when its reply is written)."""

    def __init__(self, capacity: int, sessions: Sequence[PlacesSession]) -> None:
        self.capacity = capacity
        self.sessions = list(sessions)
        self.running = 0
        self._next = 0  # where the round-robin over the connections starts

    def in_flight(self) -> int:
        return sum(s.grabs for s in self.sessions)

    def free(self) -> int:
        return self.capacity - self.running - self.in_flight()

    def take(self) -> None:
        self.running += 1

    def release(self) -> None:
        self.running -= 1

    def fill(self, first: PlacesSession | None = None) -> list[tuple[PlacesSession, bytes]]:
        """Hand the free places out as GRABs: (session, the GRABs to send), ``first`` served
        first (the connection a job just finished on: its reply carries the GRAB), the others
        in turn, each up to what its window allows."""
        free = self.free()
        if free <= 0:
            return []
        order = self.sessions
        if first is not None and first in order:
            i = order.index(first)
        else:
            i = self._next = (self._next + 1) % len(order) if order else 0
        order = order[i:] + order[:i]
        out = []
        for session in order:
            n = min(free, session.wanted())
            if n > 0:
                out.append((session, session.grab(n)))
                free -= n
                if not free:
                    break
        return out
