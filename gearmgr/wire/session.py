"""A worker's protocol session with one job server, sans-IO: bytes in, actions and deadlines out.

No sockets and no clocks live here (``now`` is passed in). The socket loop
(:mod:`gearmgr.worker.loop`) opens and closes connections, sends what an action says and runs
the jobs; everything the protocol decides lives here:

* registration (SET_CLIENT_ID, CAN_DO per function, the first GRAB_JOB_UNIQ);
* GRAB_JOB_UNIQ -> JOB_ASSIGN_UNIQ | NO_JOB -> PRE_SLEEP -> NOOP -> GRAB_JOB_UNIQ;
* every field of a job checked before use: a job for a function this process does not serve,
  or whose handle is not UTF-8, is failed back (WORK_WARNING + WORK_FAIL) and the next one
  grabbed; a job without a handle, an ERROR packet or bytes that are not packets drop the
  connection; an oversized job (over :data:`MAX_JOB_PACKET`, its body never held) is failed;
* keep-alive: a connection silent for :data:`KEEPALIVE_IDLE` sends ECHO_REQ and is dropped if
  nothing comes back within :data:`KEEPALIVE_WAIT`;
* the reconnect backoff: exponential with jitter, reset only by a connection that stayed up
  :data:`STABLE_AFTER`; its warnings rate-limited per server.

:meth:`ServerSession.deadline` is the next moment :meth:`ServerSession.tick` has something to
do (a reconnect, an ECHO_REQ, a silent server to drop); between packets and that moment the
loop sleeps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

from gearmgr import jitter
from gearmgr.logs import Throttle, clip
from gearmgr.units import parse_address
from gearmgr.wire.protocol import Decoder, Packet, PacketType, ProtocolError, encode

log = logging.getLogger("gearmgr.worker")

P = PacketType
GRAB = encode(P.GRAB_JOB_UNIQ)
PRE_SLEEP = encode(P.PRE_SLEEP)
RESET_ABILITIES = encode(P.RESET_ABILITIES)
ECHO = encode(P.ECHO_REQ, b"gearmgr")

DOWN, CONNECTING, UP = "down", "connecting", "up"
RECONNECT_MIN = 0.1  # seconds; doubled on each failure up to RECONNECT_MAX, with jitter
RECONNECT_MAX = 30.0
#: A connection that stayed up this long proved healthy: its next failure starts the backoff
#: again from RECONNECT_MIN. One that breaks sooner (a server that accepts, then closes, sends
#: garbage or ERROR) keeps doubling the delay.
STABLE_AFTER = 10.0
#: Lines about one server's failures, or its malformed packets, go out at WARNING at most this
#: often; those in between are counted in the next one (failures are logged at debug too).
WARN_INTERVAL = 60.0
KEEPALIVE_IDLE = 30.0  # a connection silent this long sends ECHO_REQ
KEEPALIVE_WAIT = 10.0  # and is dropped if the echo does not come back within this
#: Largest packet taken from a job server. A job whose packet is bigger is failed back to its
#: server (the body is dropped as it arrives, never held in memory); any other packet that big
#: drops the connection.
MAX_JOB_PACKET = 64 << 20
JOB_TYPES = frozenset({P.JOB_ASSIGN, P.JOB_ASSIGN_UNIQ, P.JOB_ASSIGN_ALL})

_JOB_ASSIGN_UNIQ, _NOOP, _NO_JOB, _ERROR = P.JOB_ASSIGN_UNIQ, P.NOOP, P.NO_JOB, P.ERROR


# -- actions: what the loop must do ---------------------------------------------------------------


class Send(NamedTuple):
    """Write ``data`` to the connection; ``answer``: it ends with a GRAB, whose answer comes at
    once (the loop may read it without asking poll first)."""

    data: bytes
    answer: bool = False


class Run(NamedTuple):
    """Run this job (its names checked); then send its reply and, unless stopping, GRAB."""

    handle: bytes
    function: str
    unique: bytes
    data: bytes


class Drop(NamedTuple):
    """Close the connection: :meth:`ServerSession.lost` has scheduled the reconnect."""

    why: str


class Connect(NamedTuple):
    """Open a connection to the server (the reconnect delay is over)."""


Action = Send | Run | Drop | Connect


def new_decoder() -> Decoder:
    """The codec as a worker uses it: packets bounded, oversized jobs discarded to be failed."""
    return Decoder(max_size=MAX_JOB_PACKET, discard=JOB_TYPES)


def registration(client_id: str, functions: Iterable[str]) -> bytes:
    """What a worker sends on connecting: its id, CAN_DO per function, the first GRAB."""
    out = [encode(P.SET_CLIENT_ID, client_id.encode())]
    out += [encode(P.CAN_DO, name.encode()) for name in sorted(functions)]
    out.append(GRAB)
    return b"".join(out)


class ServerSession:
    """The protocol state of one job server connection (see the module's docstring).

    ``functions`` are the names this process serves; ``jitter`` draws the backoff's random
    factor (injected by tests)."""

    def __init__(
        self,
        address: str,
        functions: Iterable[str],
        client_id: str,
        jitter: Callable[[float, float], float] = jitter.uniform,
    ) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.functions = {name.encode(): name for name in functions}
        self.register = registration(client_id, self.functions.values())
        self.decoder = new_decoder()
        self.state = DOWN
        self.sleeping = False
        self.failures = 0  # in a row, without a connection that proved healthy
        self.retry_at = 0.0
        self.last_rx = 0.0
        self.echo_deadline = 0.0
        self.up_since = 0.0
        self.warn = Throttle(WARN_INTERVAL)  # "server ... unavailable" lines
        self.noise = Throttle(WARN_INTERVAL)  # lines about malformed jobs and odd packets
        self.told_down = False  # a warning said it is down: say when it is back
        self._jitter = jitter

    # -- connection lifecycle ---------------------------------------------------------------------

    def connecting(self) -> None:
        self.state = CONNECTING

    def connected(self, now: float, grab: bool = True) -> Send | None:
        """The connection is up: what to send first (nothing when the process is stopping)."""
        self.state = UP
        self.decoder = new_decoder()
        self.sleeping = False
        self.last_rx = self.up_since = now
        self.echo_deadline = 0.0
        if self.told_down:
            self.told_down = False
            log.info("connected to %s again", self.address)
        return Send(self.register, answer=True) if grab else None

    def lost(self, now: float, why: str) -> float:
        """The connection is gone (or could not be made): schedule the reconnect with
        exponential backoff and jitter; return when. ``why`` must be bounded (peer bytes
        passed through ``clip``)."""
        if self.state == UP and now - self.up_since >= STABLE_AFTER:
            self.failures = 0
        self.state = DOWN
        self.failures += 1
        delay = min(RECONNECT_MAX, RECONNECT_MIN * 2 ** min(self.failures - 1, 20))
        self.retry_at = now + delay * self._jitter(0.8, 1.2)
        suffix = self.warn.allow(now)
        if suffix is not None:
            self.told_down = True
        log.log(
            logging.DEBUG if suffix is None else logging.WARNING,
            "server %s unavailable (%s); retrying in %.1fs%s",
            self.address,
            why,
            self.retry_at - now,
            suffix or "",
        )
        return self.retry_at

    def _drop(self, now: float, why: str) -> Drop:
        self.lost(now, why)
        return Drop(why)

    # -- time -------------------------------------------------------------------------------------

    def deadline(self) -> float:
        """The next moment :meth:`tick` has something to do (``inf``: none)."""
        if self.state == UP:
            return self.echo_deadline or self.last_rx + KEEPALIVE_IDLE
        if self.state == DOWN:
            return self.retry_at
        return math.inf  # connecting: the socket says when

    def tick(self, now: float) -> Action | None:
        """What is due at ``now``: a reconnect, a keep-alive ECHO_REQ, dropping a silent server."""
        if self.state == DOWN:
            return Connect() if now >= self.retry_at else None
        if self.state != UP:
            return None
        if self.echo_deadline:
            if now > self.echo_deadline:
                return self._drop(now, "no answer to keep-alive ECHO_REQ")
        elif now - self.last_rx >= KEEPALIVE_IDLE:
            self.echo_deadline = now + KEEPALIVE_WAIT
            return Send(ECHO)
        return None

    # -- packets ----------------------------------------------------------------------------------

    def decode(self, data: bytes, now: float) -> list[Packet] | Drop:
        """Bytes from the server -> the packets they complete, or Drop (not packets)."""
        try:
            packets = self.decoder.feed(data)
        except ProtocolError as exc:
            return self._drop(now, f"protocol error: {exc}")
        self.last_rx = now
        self.echo_deadline = 0.0
        return packets

    def feed(self, data: bytes, now: float, grab: bool = True) -> list[Action]:
        """Bytes from the server -> what to do, in order. ``grab``: the process takes jobs
        (False while stopping or leaving: no GRAB is sent)."""
        packets = self.decode(data, now)
        if isinstance(packets, Drop):
            return [packets]
        out: list[Action] = []
        for packet in packets:
            action = self.packet(packet, now, grab)
            if action is not None:
                out.append(action)
                if type(action) is Drop:
                    break  # the rest belongs to a stream that is gone
        return out

    def packet(self, packet: Packet, now: float, grab: bool = True) -> Action | None:
        """One packet -> at most one action."""
        ptype = packet.type
        if packet.oversize:
            args = packet.args
            return self.reject(
                args[0] if args else b"",
                args[1] if len(args) > 1 else b"?",
                f"its packet of {packet.oversize} bytes is over the limit of "
                f"{MAX_JOB_PACKET} bytes",
                now,
                grab,
            )
        if ptype == _JOB_ASSIGN_UNIQ:
            return self.job(*packet.args, now=now, grab=grab)
        if ptype == _NOOP:
            if self.sleeping and grab:
                self.sleeping = False
                return Send(GRAB, answer=True)
            return None
        if ptype == _NO_JOB:
            self.sleeping = True
            return Send(PRE_SLEEP)
        if ptype == _ERROR:  # the server gave up on something we sent: start afresh
            code, text = packet.args
            return self._drop(now, f"it sent ERROR {clip(code, 40)}: {clip(text)}")
        if ptype == P.JOB_ASSIGN:  # only an answer to GRAB_JOB, which we never send
            handle_b, function_b, data = packet.args
            return self.job(handle_b, function_b, b"", data, now=now, grab=grab)
        if ptype == P.JOB_ASSIGN_ALL:  # the same for GRAB_JOB_ALL (the reducer is unused)
            handle_b, function_b, unique_b, _, data = packet.args
            return self.job(handle_b, function_b, unique_b, data, now=now, grab=grab)
        if ptype != P.ECHO_RES:
            self.complain(now, f"sent an unexpected {type_name(ptype)} packet; ignored")
        return None

    def job(
        self,
        handle_b: bytes,
        function_b: bytes,
        unique_b: bytes,
        data: bytes,
        *,
        now: float,
        grab: bool = True,
    ) -> Run | Send | Drop:
        """A job assignment with its names checked: Run it, or fail it back (Send), or drop a
        connection whose job has no handle. Every name from the server is checked before use:
        the function must be one of ours, the handle not empty and UTF-8."""
        function = self.functions.get(function_b)
        if function is None:
            return self.reject(
                handle_b, function_b, "this process does not serve that function", now, grab
            )
        if not handle_b.isascii() or not handle_b:
            why = self.bad_handle(handle_b)
            if why is not None:
                return self.reject(handle_b, function_b, why, now, grab)
        return Run(handle_b, function, unique_b, data)

    @staticmethod
    def bad_handle(handle_b: bytes) -> str | None:
        """Why a handle cannot be used (None: it can): empty, or not UTF-8."""
        if not handle_b:
            return ""
        try:
            handle_b.decode()
        except UnicodeDecodeError:
            return "its handle is not UTF-8"
        return None

    def reject(
        self, handle_b: bytes, function_b: bytes, why: str, now: float, grab: bool = True
    ) -> Send | Drop:
        """Fail back a job this process cannot run (WORK_WARNING ``why``, WORK_FAIL) and ask
        for the next one. A job without a handle cannot be answered: drop the connection."""
        if not handle_b:
            what = f"a job of function {clip(function_b)} without a handle"
            return self._drop(now, f"it assigned {what}{why and f' ({why})'}")
        job = f"job {clip(handle_b, 80)} of function {clip(function_b)}"
        self.complain(now, f"assigned {job}: {why}; failed it")
        reply = encode(P.WORK_WARNING, handle_b, f"gearmgr: {why}".encode()) + encode(
            P.WORK_FAIL, handle_b
        )
        return Send(reply + GRAB, answer=True) if grab else Send(reply)

    def complain(self, now: float, what: str) -> None:
        """One rate-limited warning about what the server sent (see WARN_INTERVAL)."""
        suffix = self.noise.allow(now)
        if suffix is not None:
            log.warning("server %s %s%s", self.address, what, suffix)


def type_name(ptype: int) -> str:
    try:
        return PacketType(ptype).name
    except ValueError:
        return str(ptype)
