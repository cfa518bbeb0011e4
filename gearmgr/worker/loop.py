"""The worker loop: register, grab, run, reply, check limits, drain on request.

Runs in a worker process (forked by the supervisor, or on its own through the library API).
One process runs one job at a time, from any of its servers. Each server connection is a
blocking socket read only when ``poll`` says it is readable, so the job path is: ``recv`` ->
codec -> Job -> the function -> one ``send`` carrying the reply and the next GRAB_JOB_UNIQ.
Nothing else happens there: no logging above debug, limits checked with arithmetic, the
process title updated only when the process turns idle or busy.

Signals: TERM asks for a graceful stop (finish the job in hand, send RESET_ABILITIES, exit);
INT does the same when the worker runs on its own and is ignored under a supervisor (which
handles Ctrl-C for the whole group); USR1 reopens the log file. Handlers only record; a
wakeup pipe makes ``poll`` return.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import select
import signal
import socket
import struct
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from gearmgr import scoreboard as sb
from gearmgr.errors import ExitCode
from gearmgr.logs import Throttle, clip, ensure_stdio, reopen_log_file, set_label
from gearmgr.wire.protocol import (
    HEADER,
    REQ,
    RES,
    Decoder,
    Packet,
    PacketType,
    ProtocolError,
    encode,
)
from gearmgr.words import plural
from gearmgr.worker.job import Job, to_bytes

log = logging.getLogger("gearmgr.worker")

P = PacketType
GRAB = encode(P.GRAB_JOB_UNIQ)
PRE_SLEEP = encode(P.PRE_SLEEP)
RESET_ABILITIES = encode(P.RESET_ABILITIES)
_WORK_COMPLETE = P.WORK_COMPLETE
_JOB_ASSIGN_UNIQ = P.JOB_ASSIGN_UNIQ
_NOOP = P.NOOP
_NO_JOB = P.NO_JOB
_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack

_NBUCKETS = len(sb.BUCKETS)
_BUCKET_BOUNDS = sb.BUCKETS
_F_DURATION, _F_BUCKETS = sb.F_DURATION, sb.F_BUCKETS
_BUSY, _IDLE = sb.BUSY, sb.IDLE
_monotonic = time.monotonic
_bisect = bisect_left


class _SlotWords:
    """Absolute word indexes of one scoreboard slot's fields, computed once per process."""

    __slots__ = ("deadline", "done", "failed", "state")

    def __init__(self, base: int) -> None:
        self.state = base + sb.STATE
        self.deadline = base + sb.JOB_DEADLINE
        self.done = base + sb.JOBS_DONE
        self.failed = base + sb.JOBS_FAILED


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
_JOB_TYPES = frozenset({P.JOB_ASSIGN, P.JOB_ASSIGN_UNIQ, P.JOB_ASSIGN_ALL})
HOUSEKEEPING = 0.5  # seconds between checks of the parent, lifetime and keep-alives
SEND_TIMEOUT = 30.0
#: A read that expects gearmand's answer to GRAB_JOB_UNIQ blocks at most this long before the
#: loop falls back to ``poll`` (so housekeeping and a stop request are never held up for long).
DIRECT_READ_TIMEOUT = HOUSEKEEPING
#: Bytes asked of one recv(). Kept under glibc's default mmap threshold (128 KiB): CPython
#: allocates the whole size for each recv() and shrinks it after, and a 256 KiB request cost
#: an mmap + mremap + munmap per job whenever the threshold had not been raised.
RECV_SIZE = 65536


def split_address(address: str, default_port: int = 4730) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host.strip("[]"), int(port)


class Connection:
    """One job server as the worker sees it."""

    __slots__ = (
        "address",
        "decoder",
        "echo_deadline",
        "failures",
        "host",
        "last_rx",
        "noise",
        "port",
        "retry_at",
        "send_job",
        "sleeping",
        "sock",
        "state",
        "told_down",
        "up_since",
        "warn",
    )

    def __init__(self, address: str) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.sock: socket.socket | None = None
        self.decoder = new_decoder()
        self.state = DOWN
        self.sleeping = False
        self.failures = 0  # in a row, without a connection that proved healthy
        self.retry_at = 0.0
        self.last_rx = 0.0
        self.echo_deadline = 0.0
        self.up_since = 0.0
        self.send_job: Callable[[bytes], None] | None = None
        self.warn = Throttle(WARN_INTERVAL)  # "server ... unavailable" lines
        self.noise = Throttle(WARN_INTERVAL)  # lines about malformed jobs and odd packets
        self.told_down = False  # a warning said it is down: say when it is back


def new_decoder() -> Decoder:
    """The codec as a worker uses it: packets bounded, oversized jobs discarded to be failed."""
    return Decoder(max_size=MAX_JOB_PACKET, discard=_JOB_TYPES)


class Worker:
    """Serve ``handlers`` (function name -> callable taking a Job) from every server.

    ``timeouts`` maps function names to a job timeout in seconds: a job that runs longer is
    failed for its client (WORK_WARNING + WORK_FAIL) and the process exits, so that gearmand
    does not run it again elsewhere. ``max_jobs``, ``max_lifetime`` (seconds) and
    ``max_memory`` (bytes) make the process leave between jobs; 0 disables each.
    """

    def __init__(
        self,
        servers: Iterable[str],
        handlers: dict[str, Callable[[Job], Any]],
        *,
        client_id: str | None = None,
        timeouts: dict[str, float] | None = None,
        max_jobs: int = 0,
        max_lifetime: float = 0.0,
        max_memory: int = 0,
        scoreboard: sb.Scoreboard | None = None,
        slot: int = 0,
        parent_pid: int | None = None,
        title: Callable[[str], None] | None = None,
        counters: list[str] | None = None,
        stop_on_sigint: bool = True,
    ) -> None:
        self.handlers = dict(handlers)
        self.conns = [Connection(a) for a in servers]
        self.client_id = client_id or f"{socket.gethostname()}:{os.getpid()}"
        self.timeouts = {f: t for f, t in (timeouts or {}).items() if t > 0}
        self.max_jobs = max_jobs
        self.max_memory = max_memory
        self.started = time.monotonic()
        self.deadline = self.started + max_lifetime if max_lifetime > 0 else 0.0
        self.parent_pid = parent_pid
        self.jobs = 0
        self.leaving = sb.REASON_NONE
        self._set_title = title
        self._stop_on_sigint = stop_on_sigint
        self._busy = False
        self._stop = False
        self._reopen = False
        self._by_fd: dict[int, Connection] = {}
        self._poll = select.poll()
        ensure_stdio()  # a closed fd 0-2 must not become one of ours
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._register_packet = self._registration()
        self._names = ",".join(sorted(self.handlers))
        # Scoreboard: the slot's words, written with plain stores.
        if scoreboard is None:  # on its own: a private slot, so the job path has no branches
            scoreboard, slot = sb.Scoreboard(capacity=1), 0
        self._sb = scoreboard
        self._base = scoreboard.base(slot)
        self._words = scoreboard.words
        self._floats = scoreboard.floats
        self._slot_words = _SlotWords(self._base)
        order = counters if counters is not None else sorted(self.handlers)
        self._func_index = {  # function -> first word of its counters in the slot
            name: self._base + sb.FUNC_BASE + sb.FUNC_STRIDE * i
            for i, name in enumerate(order)
            if i < sb.MAX_FUNCTION_COUNTERS
        }
        # Timeouts: a watchdog thread fails the overrunning job; sends are then serialised.
        self._lock = threading.Lock() if self.timeouts else None
        self._current: tuple[Connection, bytes, float, float, str] | None = None
        # The connection that owes us an answer to GRAB_JOB_UNIQ (JOB_ASSIGN_UNIQ or NO_JOB):
        # gearmand answers a GRAB at once, so the loop reads it with a blocking recv() and skips
        # the poll() call that would only say "readable" (one system call less per job).
        self._due: Connection | None = None
        # Only with one server: with several, every read goes through poll() so that a busy
        # server cannot starve the others (their jobs, their keep-alive answers).
        self._direct = len(self.conns) == 1

    # -- public ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve jobs until stopped or a limit is reached; return the exit code."""
        set_label(f"worker {self._names}")
        self._install_signals()
        self._poll.register(self._wakeup_r, select.POLLIN)
        self._write_slot_start()
        if self.max_memory:
            baseline = current_rss()
            if baseline > self.max_memory:
                log.warning(
                    "a fresh process already uses %d bytes, over max_memory (%d); "
                    "memory recycling is off for this process to avoid a recycle loop",
                    baseline,
                    self.max_memory,
                )
                self.max_memory = 0
        if self.timeouts:
            threading.Thread(target=self._watchdog, name="gearmgr-timeout", daemon=True).start()
        now = time.monotonic()
        for each in self.conns:
            self._connect(each, now)
        self._title("idle")
        next_housekeeping = now + HOUSEKEEPING
        while not self._stop and not self.leaving:
            due = self._due
            if due is not None:
                self._due = None
                if due.state == UP:
                    self._receive(due, direct=True)
                    now = time.monotonic()
                    if now >= next_housekeeping:
                        self._housekeeping(now)
                        next_housekeeping = now + HOUSEKEEPING
                    continue
            events = self._poll.poll(self._poll_timeout(next_housekeeping))
            for fd, _ev in events:
                conn: Connection | None = self._by_fd.get(fd)
                if conn is None:
                    self._drain_wakeup()
                    continue
                if conn.state == CONNECTING:
                    self._finish_connect(conn)
                else:
                    self._receive(conn)
                if self.leaving:
                    break
            now = time.monotonic()
            if now >= next_housekeeping:
                self._housekeeping(now)
                next_housekeeping = now + HOUSEKEEPING
        return self._shutdown()

    def stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler)."""
        self._stop = True
        try:
            os.write(self._wakeup_w, b"\0")
        except OSError:
            pass

    # -- connections -----------------------------------------------------------------------------

    def _registration(self) -> bytes:
        out = [encode(P.SET_CLIENT_ID, self.client_id.encode())]
        out += [encode(P.CAN_DO, name.encode()) for name in sorted(self.handlers)]
        out.append(GRAB)
        return b"".join(out)

    def _connect(self, conn: Connection, now: float) -> None:
        ensure_stdio()  # a job closed fd 1? then a socket there would receive its print()s
        try:
            infos = socket.getaddrinfo(conn.host, conn.port, type=socket.SOCK_STREAM)
            family, stype, proto, _, addr = infos[0]
            sock = socket.socket(family, stype, proto)
            if sock.fileno() <= 2:  # a job's thread closed it since: move the socket up
                high = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
                sock.close()
                sock = socket.socket(family, stype, proto, fileno=high)
                ensure_stdio()
        except OSError as exc:
            self._lost(conn, now, f"cannot resolve: {exc}")
            return
        sock.setblocking(False)
        rc = sock.connect_ex(addr)
        conn.sock = sock
        self._by_fd[sock.fileno()] = conn
        if rc in (0, errno.EINPROGRESS):
            conn.state = CONNECTING
            self._poll.register(sock, select.POLLOUT)
            if rc == 0:
                self._finish_connect(conn)
        else:
            self._lost(conn, now, os.strerror(rc))

    def _finish_connect(self, conn: Connection) -> None:
        sock = conn.sock
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        now = time.monotonic()
        if err:
            self._lost(conn, now, os.strerror(err))
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sec = int(SEND_TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, 0))
        usec = int(DIRECT_READ_TIMEOUT * 1e6)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", usec // 1000000, usec % 1000000),
        )
        self._poll.modify(sock, select.POLLIN)
        conn.state = UP
        conn.decoder = new_decoder()
        conn.sleeping = False
        conn.last_rx = now
        conn.up_since = now
        conn.echo_deadline = 0.0
        conn.send_job = self._job_sender(conn)
        if conn.told_down:
            conn.told_down = False
            log.info("connected to %s again", conn.address)
        self._count_connected()
        if self._stop or self.leaving:
            return
        if self._send(conn, self._register_packet) and self._direct:
            self._due = conn

    def _lost(self, conn: Connection, now: float, why: str) -> None:
        """Close ``conn`` and schedule a reconnect with exponential backoff and jitter.

        The delay grows with each failure in a row; only a connection that stayed up for
        STABLE_AFTER resets it. ``why`` must be bounded (peer bytes passed through ``clip``)."""
        if conn.sock is not None:
            self._by_fd.pop(conn.sock.fileno(), None)
            try:
                self._poll.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            conn.sock = None
        if conn.state == UP and now - conn.up_since >= STABLE_AFTER:
            conn.failures = 0
        conn.state = DOWN
        conn.failures += 1
        delay = min(RECONNECT_MAX, RECONNECT_MIN * 2 ** min(conn.failures - 1, 20))
        conn.retry_at = now + delay * random.uniform(0.8, 1.2)
        suffix = conn.warn.allow(now)
        if suffix is not None:
            conn.told_down = True
        log.log(
            logging.DEBUG if suffix is None else logging.WARNING,
            "server %s unavailable (%s); retrying in %.1fs%s",
            conn.address,
            why,
            conn.retry_at - now,
            suffix or "",
        )
        self._count_connected()

    def _count_connected(self) -> None:
        up = sum(1 for c in self.conns if c.state == UP)
        self._sb.words[self._base + sb.SERVERS_CONNECTED] = up

    def _send(self, conn: Connection, data: bytes) -> bool:
        sock = conn.sock
        if sock is None or conn.state != UP:
            return False
        try:
            sock.sendall(data)
            return True
        except OSError as exc:
            self._lost(conn, time.monotonic(), f"send failed: {exc}")
            return False

    # -- packets ---------------------------------------------------------------------------------

    def _receive(self, conn: Connection, direct: bool = False) -> None:
        sock = conn.sock
        assert sock is not None
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:  # a direct read ran into SO_RCVTIMEO: poll() takes over
            return
        except OSError as exc:
            self._lost(conn, time.monotonic(), f"receive failed: {exc}")
            return
        if not data:
            self._lost(conn, time.monotonic(), "connection closed by the server")
            return
        # Fast path: the read holds exactly one JOB_ASSIGN_UNIQ and nothing is pending, which
        # is every job of a busy worker. Anything else goes through the decoder.
        if len(data) > 12 and not conn.decoder.pending:
            magic, ptype, size = _unpack_header(data)
            if ptype == _JOB_ASSIGN_UNIQ and magic == RES and size + 12 == len(data):
                # Slices at the three NULs: the workload is copied once, however large.
                h = data.find(b"\0", 12)
                f = data.find(b"\0", h + 1) if h > 0 else -1
                u = data.find(b"\0", f + 1) if f > 0 else -1
                if u > 0:
                    conn.last_rx = time.monotonic()
                    conn.echo_deadline = 0.0
                    args = (data[12:h], data[h + 1 : f], data[f + 1 : u], data[u + 1 :])
                    self._run_job(conn, args)
                    return
        try:
            packets = conn.decoder.feed(data)
        except ProtocolError as exc:
            self._lost(conn, time.monotonic(), f"protocol error: {exc}")
            return
        conn.last_rx = time.monotonic()
        conn.echo_deadline = 0.0
        if direct and not packets:  # part of a packet: the rest is on its way
            self._due = conn
            return
        for packet in packets:
            if conn.state != UP:  # lost on the way (a send failed, an ERROR): drop the rest
                return
            ptype = packet.type
            if packet.oversize:
                self._oversized(conn, packet)
            elif ptype == _JOB_ASSIGN_UNIQ:
                self._run_job(conn, packet.args)
            elif ptype == _NOOP:
                if conn.sleeping and not (self._stop or self.leaving):
                    conn.sleeping = False
                    if self._send(conn, GRAB) and self._direct:
                        self._due = conn
            elif ptype == _NO_JOB:
                conn.sleeping = True
                self._send(conn, PRE_SLEEP)
                if self._busy and all(c.sleeping or c.state != UP for c in self.conns):
                    self._busy = False
                    self._title("idle")
            elif ptype == P.ERROR:  # the server gave up on something we sent: start afresh
                code, text = packet.args
                self._lost(conn, time.monotonic(), f"it sent ERROR {clip(code, 40)}: {clip(text)}")
            elif ptype == P.JOB_ASSIGN:  # only an answer to GRAB_JOB, which we never send
                handle_b, function_b, data = packet.args
                self._run_job(conn, (handle_b, function_b, b"", data))
            elif ptype == P.JOB_ASSIGN_ALL:  # the same for GRAB_JOB_ALL (the reducer is unused)
                handle_b, function_b, unique_b, _, data = packet.args
                self._run_job(conn, (handle_b, function_b, unique_b, data))
            elif ptype != P.ECHO_RES:
                self._complain(conn, f"sent an unexpected {_type_name(ptype)} packet; ignored")

    def _complain(self, conn: Connection, what: str) -> None:
        """One rate-limited warning about what a server sent (see WARN_INTERVAL)."""
        suffix = conn.noise.allow(time.monotonic())
        if suffix is not None:
            log.warning("server %s %s%s", conn.address, what, suffix)

    def _reject(self, conn: Connection, handle_b: bytes, function_b: bytes, why: str) -> None:
        """Fail back a job this process cannot run (WORK_WARNING ``why``, WORK_FAIL) and ask
        for the next one. A job without a handle cannot be answered: the connection is dropped
        and reopened."""
        if not handle_b:
            what = f"a job of function {clip(function_b)} without a handle"
            self._lost(conn, time.monotonic(), f"it assigned {what}{why and f' ({why})'}")
            return
        job = f"job {clip(handle_b, 80)} of function {clip(function_b)}"
        self._complain(conn, f"assigned {job}: {why}; failed it")
        reply = encode(P.WORK_WARNING, handle_b, f"gearmgr: {why}".encode()) + encode(
            P.WORK_FAIL, handle_b
        )
        grab = not (self._stop or self.leaving)
        if grab:
            reply += GRAB
        if self._lock is not None:
            with self._lock:
                ok = self._send(conn, reply)
        else:
            ok = self._send(conn, reply)
        if ok and grab and self._direct:
            self._due = conn

    def _oversized(self, conn: Connection, packet: Packet) -> None:
        """A packet over MAX_JOB_PACKET, its body dropped: fail the job it assigned."""
        args = packet.args
        self._reject(
            conn,
            args[0] if args else b"",
            args[1] if len(args) > 1 else b"?",
            f"its packet of {packet.oversize} bytes is over the limit of {MAX_JOB_PACKET} bytes",
        )

    def _run_job(self, conn: Connection, args: tuple[bytes, ...] | list[bytes]) -> None:
        handle_b, function_b, unique_b, data = args
        # Every name from the server is checked before use (a broken or hostile server must
        # not take the process down): the function must be one of ours, the handle not empty
        # and UTF-8. What fails is failed back to the server, and the process serves on.
        try:
            function = function_b.decode()
            handler = self.handlers[function]
        except (UnicodeDecodeError, KeyError):
            self._reject(conn, handle_b, function_b, "this process does not serve that function")
            return
        if not handle_b.isascii() or not handle_b:
            try:
                handle_b.decode()
            except UnicodeDecodeError:
                self._reject(conn, handle_b, function_b, "its handle is not UTF-8")
                return
            if not handle_b:
                self._reject(conn, handle_b, function_b, "")
                return
        if not self._busy:
            self._busy = True
            self._title("busy")
        words, floats, slot = self._words, self._floats, self._slot_words
        start = _monotonic()
        words[slot.state] = _BUSY
        job = Job(handle_b, function, unique_b, data, conn.send_job)  # type: ignore[arg-type]
        if self.timeouts:
            timeout = self.timeouts.get(function)
            if timeout:
                floats[slot.deadline] = start + timeout
                self._current = (conn, handle_b, start + timeout, timeout, function)
        failed = False
        try:
            result = to_bytes(handler(job))
            head = _pack_header(REQ, _WORK_COMPLETE, len(handle_b) + 1 + len(result))
            reply = [head, handle_b, b"\0", result]
        except BaseException as exc:  # the job fails, the process lives on
            failed = True
            text = f"{type(exc).__name__}: {exc}"
            job.log.error("failed: %s", text, exc_info=not isinstance(exc, SystemExit))
            reply = [encode(P.WORK_WARNING, handle_b, text.encode()), encode(P.WORK_FAIL, handle_b)]
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                self._stop = True  # the job asked the process to exit: it does, and says why
                self.leaving = sb.REASON_JOB_EXIT
                words[self._base + sb.JOB_EXIT] = sb.job_exit_word(exc)
        if self._lock is not None:
            with self._lock:  # from here on the watchdog leaves this job alone
                self._current = None
                floats[slot.deadline] = 0.0
        end = _monotonic()
        self.jobs += 1
        duration = end - start
        words[slot.done] = self.jobs
        fb = self._func_index.get(function)
        if fb is not None:
            words[fb + failed] += 1
            floats[fb + _F_DURATION] += duration
            bucket = _bisect(_BUCKET_BOUNDS, duration)
            if bucket < _NBUCKETS:
                words[fb + _F_BUCKETS + bucket] += 1
        if failed:
            words[slot.failed] += 1
        words[slot.state] = _IDLE
        if self.max_jobs or self.deadline or self.max_memory:
            self._check_limits(end)
        grab = not (self._stop or self.leaving)
        if grab:
            reply.append(GRAB)
        packet = b"".join(reply)  # the reply and the next GRAB in one write, one copy
        if self._lock is not None:
            with self._lock:  # the job's own sends (status, data) may come from its threads
                ok = self._send(conn, packet)
        else:
            ok = self._send(conn, packet)
        if ok and grab and self._direct:
            self._due = conn
        if not ok:
            log.warning(
                "the result of job %s could not be sent to %s; gearmand re-queues "
                "a job whose worker disconnected (unless it restarted without a persistent queue)",
                job.handle,
                conn.address,
            )

    def _job_sender(self, conn: Connection) -> Callable[[bytes], None]:
        lock = self._lock

        def send(data: bytes) -> None:
            if lock is None:
                self._send(conn, data)
            else:
                with lock:
                    self._send(conn, data)

        return send

    def _check_limits(self, now: float) -> None:
        if self.max_jobs and self.jobs >= self.max_jobs:
            self.leaving = sb.REASON_MAX_JOBS
        elif self.deadline and now >= self.deadline:
            self.leaving = sb.REASON_MAX_LIFETIME
        elif self.max_memory:
            rss = current_rss()
            self._sb.words[self._base + sb.RSS] = rss
            if rss > self.max_memory:
                self.leaving = sb.REASON_MAX_MEMORY

    # -- timeouts --------------------------------------------------------------------------------

    def _watchdog(self) -> None:
        """Fail a job that overran its timeout, then leave (runs in a thread).

        gearmand's own CAN_DO_TIMEOUT re-queues an expired job (so it runs twice) and clamps
        the value to 1 s; gearmgr registers plain CAN_DO and enforces the timeout here instead:
        the client gets WORK_WARNING "TimeoutError: ..." and WORK_FAIL, and the process, whose
        job code may still be running, exits. If the job holds the GIL so this thread never
        runs, the supervisor kills the process a little later (the job is then re-queued).
        """
        assert self._lock is not None
        nap = min(self.timeouts.values())
        while True:
            current = self._current
            now = time.monotonic()
            if current is None or now < current[2]:
                time.sleep(nap if current is None else max(0.001, current[2] - now))
                continue
            with self._lock:
                if self._current is not current:
                    continue
                conn, handle, _, limit, function = current
                text = f"TimeoutError: job exceeded its timeout of {limit:g}s".encode()
                fail = encode(P.WORK_WARNING, handle, text) + encode(P.WORK_FAIL, handle)
                self._send(conn, fail)
                log.error(
                    "job %s overran its timeout; failed it and exiting",
                    handle.decode(errors="replace"),
                )
                words = self._sb.words
                words[self._base + sb.EXIT_REASON] = sb.REASON_TIMEOUT
                words[self._base + sb.JOBS_DONE] = self.jobs + 1
                words[self._base + sb.JOBS_FAILED] += 1
                fb = self._func_index.get(function)
                if fb is not None:
                    words[fb + sb.F_FAILED] += 1
                    self._sb.floats[fb + sb.F_DURATION] += limit
                    bucket = bisect_left(sb.BUCKETS, limit)
                    if bucket < _NBUCKETS:
                        words[fb + sb.F_BUCKETS + bucket] += 1
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os._exit(ExitCode.TIMEOUT)

    # -- housekeeping ----------------------------------------------------------------------------

    def _poll_timeout(self, next_housekeeping: float) -> int:
        wait = next_housekeeping - time.monotonic()
        return max(0, int(wait * 1000) + 1)

    def _housekeeping(self, now: float) -> None:
        ensure_stdio()  # before anything opens a file or a socket
        if self._reopen:
            self._reopen = False
            reopen_log_file()
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("the supervisor is gone; exiting")
            self.leaving = sb.REASON_PARENT_GONE
            return
        if self.deadline and now >= self.deadline:
            self.leaving = sb.REASON_MAX_LIFETIME
            return
        for conn in self.conns:
            if conn.state == DOWN and now >= conn.retry_at:
                self._connect(conn, now)
            elif conn.state == UP:  # idle, or owing us an answer (to GRAB, to a packet's rest)
                if conn.echo_deadline and now > conn.echo_deadline:
                    self._lost(conn, now, "no answer to keep-alive ECHO_REQ")
                elif not conn.echo_deadline and now - conn.last_rx > KEEPALIVE_IDLE:
                    conn.echo_deadline = now + KEEPALIVE_WAIT
                    self._send(conn, encode(P.ECHO_REQ, b"gearmgr"))
        if not self.max_memory:
            self._sb.words[self._base + sb.RSS] = current_rss()
        self._title("busy" if self._busy else "idle")

    def _shutdown(self) -> int:
        reason = self.leaving or sb.REASON_STOP
        self._sb.words[self._base + sb.EXIT_REASON] = reason
        self._sb.words[self._base + sb.STATE] = sb.STOPPING
        for conn in self.conns:
            if conn.state == UP:
                self._send(conn, RESET_ABILITIES)
            if conn.sock is not None:
                conn.sock.close()
        if reason != sb.REASON_STOP:
            log.info("leaving after %s (%s)", plural(self.jobs, "job"), sb.REASON_NAMES[reason])
        return ExitCode.OK

    # -- process state ---------------------------------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self._wakeup_w, False)
        os.set_blocking(self._wakeup_r, False)
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGUSR1, self._request_reopen)
        # Under a supervisor, Ctrl-C in a terminal reaches the whole process group: the
        # supervisor decides, the workers ignore it. On its own, Ctrl-C stops a worker gracefully.
        if self._stop_on_sigint:
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)

    def _request_reopen(self, *_: object) -> None:
        self._reopen = True

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wakeup_r, 512):
                pass
        except BlockingIOError:
            pass

    def _write_slot_start(self) -> None:
        w, f, b = self._sb.words, self._sb.floats, self._base
        w[b + sb.PID] = os.getpid()
        f[b + sb.STARTED_AT] = self.started
        w[b + sb.STATE] = sb.IDLE
        w[b + sb.RSS] = current_rss()

    def _title(self, state: str) -> None:
        if self._set_title is not None:
            self._set_title(f"gearmgr: worker {self._names} [jobs={self.jobs} {state}]")


def _type_name(ptype: int) -> str:
    try:
        return PacketType(ptype).name
    except ValueError:
        return str(ptype)


_PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    """This process's resident set size in bytes (one read of /proc/self/statm)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0
