"""The Gearman wire protocol, sans-IO: bytes in, packets out, and back.

No sockets and no clocks live here. The worker, the client and the admin tools all put their
own socket loop on top of this codec. The binary framing (gearmand's ``PROTOCOL`` file) is a
12-byte header (magic ``\\0REQ`` or ``\\0RES``, a big-endian packet type and a big-endian body
length) followed by NUL-separated arguments, the last of which runs to the end of the body and
may itself contain NULs.

Malformed input (bad magic, unknown packet type, a length over the limit, too few arguments)
raises :class:`ProtocolError`; callers close and reopen the connection on it. A decoder can
instead be told to discard packets of some types that are over the limit (the worker does so
for job assignments, to fail such a job rather than drop the connection and get it again).

The packet types and argument counts live in :mod:`gearmgr.wire.packets`, the text admin
protocol (``status``, ``workers``, ``version``) in :mod:`gearmgr.wire.text`; every name of
both is importable from here too. The worker's fast path has two helpers here,
:func:`assigned_job` and :func:`work_complete`, compiled from ``gearmgr/_speedups.c`` when a C
compiler was there at install time (pure Python otherwise).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeVar

from gearmgr.compiled import speedups
from gearmgr.wire.packets import (
    ARG_COUNT,
    DISCARD_HEAD,
    HEADER,
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    REQ,
    RES,
    PacketType,
    ProtocolError,
)
from gearmgr.wire.text import (
    AdminDecoder,
    FunctionStatus,
    WorkerInfo,
    parse_status,
    parse_workers,
)

__all__ = [
    "ARG_COUNT",
    "DISCARD_HEAD",
    "HEADER",
    "HEADER_SIZE",
    "MAX_PACKET_SIZE",
    "REQ",
    "RES",
    "AdminDecoder",
    "Decoder",
    "FunctionStatus",
    "Packet",
    "PacketType",
    "ProtocolError",
    "WorkerInfo",
    "assigned_job",
    "encode",
    "parse_status",
    "parse_workers",
    "work_complete",
]

T = PacketType


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded packet: its type, its arguments and whether it was a request or a response.

    ``oversize`` is set (to the body's length) on a packet that was over the decoder's limit and
    discarded: ``args`` then holds only the leading arguments found in its first
    :data:`DISCARD_HEAD` bytes, never the last one (see :class:`Decoder`'s ``discard``)."""

    type: int
    args: tuple[bytes, ...] = ()
    magic: bytes = RES
    oversize: int = 0

    def __repr__(self) -> str:
        try:
            name = PacketType(self.type).name
        except ValueError:
            name = str(self.type)
        if self.oversize:
            return f"Packet({name}, {self.args!r}, oversize={self.oversize})"
        return f"Packet({name}, {self.args!r})"


_pack_header = HEADER.pack


def encode(ptype: int, *args: bytes, magic: bytes = REQ) -> bytes:
    """One packet as bytes. Only the last argument may contain NUL bytes."""
    body = b"\0".join(args)
    return _pack_header(magic, ptype, len(body)) + body


#: A JOB_ASSIGN_UNIQ response's header, its magic and type read as one 64-bit number, then its
#: body's length: one unpack, no bytes object for the magic.
_ASSIGN_HEAD = struct.Struct(">QI").unpack_from
_ASSIGN_KEY = int.from_bytes(RES + PacketType.JOB_ASSIGN_UNIQ.to_bytes(4, "big"), "big")
#: Bodies up to this size are split from a copy (the copy costs less than two more calls).
_SPLIT_COPY_MAX = 4096
#: WORK_COMPLETE's header without its length.
_COMPLETE_HEAD = struct.Struct(">8sI").pack
_COMPLETE_PREFIX = REQ + PacketType.WORK_COMPLETE.to_bytes(4, "big")

V = TypeVar("V")


def _py_assigned_job(
    data: bytes, functions: dict[bytes, V]
) -> tuple[bytes, V, bytes, bytes] | None:
    """``(handle, functions[name], unique, workload)`` if ``data`` is exactly one whole
    JOB_ASSIGN_UNIQ response whose handle is ASCII and not empty and whose function is in
    ``functions``; else None (then feed ``data`` to a :class:`Decoder`, whose session checks
    every name). A busy worker's every read is one such packet."""
    try:
        key, size = _ASSIGN_HEAD(data)
    except struct.error:  # shorter than a header
        return None
    if key != _ASSIGN_KEY or size + HEADER_SIZE != len(data):
        return None
    if size < _SPLIT_COPY_MAX:  # one split of a copy: fewer calls than three finds
        parts = data[HEADER_SIZE:].split(b"\0", 3)
        if len(parts) != 4:
            return None
        handle, name, unique, workload = parts
    else:  # a large workload: cut at the three NULs, copied once
        find = data.find
        h = find(b"\0", HEADER_SIZE)
        f = find(b"\0", h + 1) if h > 0 else -1
        u = find(b"\0", f + 1) if f > 0 else -1
        if u < 0:
            return None
        handle, name, unique, workload = data[12:h], data[h + 1 : f], data[f + 1 : u], data[u + 1 :]
    value = functions.get(name)
    if value is None or not handle or not handle.isascii():
        return None
    return handle, value, unique, workload


def _py_work_complete(handle: bytes, result: bytes, then: bytes = b"") -> bytes:
    """WORK_COMPLETE for ``handle`` followed by the packet(s) ``then`` (the next GRAB), as one
    buffer built with one copy of ``result``."""
    return b"".join(
        (
            _COMPLETE_HEAD(_COMPLETE_PREFIX, len(handle) + 1 + len(result)),
            handle,
            b"\0",
            result,
            then,
        )
    )


# The same two in C when the optional extension was built (setup.py; docs/architecture.md says
# why): they are all the codec does for a busy worker's job. Both versions are tested alike.
if speedups is not None:
    assigned_job, work_complete = speedups.assigned_job, speedups.work_complete
else:
    assigned_job, work_complete = _py_assigned_job, _py_work_complete
SPEEDUPS = assigned_job is not _py_assigned_job


class Decoder:
    """Incremental packet decoder: feed it bytes as they arrive, get whole packets back.

    ``expect`` is the magic the peer must send: ``RES`` for a client or worker reading from
    gearmand, ``REQ`` for code that plays the server (tests, fakes).

    Errors are raised as soon as a whole header has arrived (bad magic, unknown type, a length
    over ``max_size``) or a whole body (too few arguments). On a :class:`ProtocolError` the
    decoder drops everything it holds, including packets completed earlier in the same
    :meth:`feed`; the stream is out of sync, so close the connection. The same object then
    decodes a new stream as if it were new. A body sent with a packet that takes no arguments
    (``NOOP``, ``NO_JOB``...) is ignored.

    Packets of the types in ``discard`` that are over ``max_size`` do not raise: their body is
    dropped as it arrives (never held), and once it has all gone by, the packet is returned with
    ``oversize`` set and only its leading arguments (see :class:`Packet`).
    """

    __slots__ = (
        "_chunks",
        "_discard",
        "_expect",
        "_head",
        "_left",
        "_max_size",
        "_need",
        "_size",
        "_skipped",
    )

    def __init__(
        self,
        expect: bytes = RES,
        max_size: int = MAX_PACKET_SIZE,
        discard: frozenset[int] = frozenset(),
    ) -> None:
        # Bytes not yet decoded are kept as a list of chunks and joined only once ``_need``
        # bytes are there (a header, or a header and its body): a large body arriving in
        # many small reads is then copied once, not once per read.
        self._chunks: list[bytes] = []
        self._size = 0
        self._need = HEADER_SIZE
        self._expect = expect
        self._max_size = max_size
        self._discard = discard
        # An oversized packet being discarded: its header, the start of its body, bytes to go.
        self._skipped: tuple[bytes, int, int] | None = None
        self._head = b""
        self._left = 0

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole packet (not 0 while one is discarded)."""
        return self._size + self._left

    def _reset(self) -> None:
        self._chunks = []
        self._size = 0
        self._need = HEADER_SIZE
        self._skipped = None
        self._left = 0

    def _skip(self, data: bytes, pos: int) -> tuple[Packet | None, int]:
        """Drop the body of the packet being discarded from ``data[pos:]``; return the packet
        once its whole body has gone by, and where the next packet starts."""
        n = min(self._left, len(data) - pos)
        if len(self._head) < DISCARD_HEAD:
            self._head += data[pos : pos + min(n, DISCARD_HEAD - len(self._head))]
        self._left -= n
        pos += n
        if self._left:
            return None, pos
        assert self._skipped is not None
        magic, ptype, size = self._skipped
        self._skipped = None
        parts = self._head.split(b"\0", max(ARG_COUNT[ptype] - 1, 0))[:-1]
        self._head = b""
        return Packet(ptype, tuple(parts), magic, size), pos

    def feed(self, data: bytes) -> list[Packet]:
        """Add ``data`` and return every packet it completes, in order."""
        if not data:
            return []
        first: list[Packet] = []
        if self._left:
            packet, pos = self._skip(data, 0)
            if packet is None:
                return []
            first.append(packet)
            data = data[pos:]
            if not data:
                return first
        self._chunks.append(data)
        self._size += len(data)
        if self._size < self._need:
            return first
        chunks = self._chunks
        buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        out: list[Packet] = first
        pos = 0
        end = len(buf)
        need = HEADER_SIZE
        unpack_from = HEADER.unpack_from
        while end - pos >= HEADER_SIZE:
            magic, ptype, size = unpack_from(buf, pos)
            if magic != self._expect:
                self._reset()
                raise ProtocolError(f"bad magic {bytes(magic)!r}, expected {self._expect!r}")
            nargs = ARG_COUNT.get(ptype)
            if nargs is None:
                self._reset()
                raise ProtocolError(f"unknown packet type {ptype}")
            if size > self._max_size:
                if ptype not in self._discard:
                    self._reset()
                    raise ProtocolError(
                        f"packet of {size} bytes exceeds the limit of {self._max_size}"
                    )
                self._skipped, self._head, self._left = (magic, ptype, size), b"", size
                packet, pos = self._skip(buf, pos + HEADER_SIZE)
                if packet is None:
                    break
                out.append(packet)
                continue
            start = pos + HEADER_SIZE
            if end - start < size:
                need = HEADER_SIZE + size
                break
            body = buf[start : start + size]
            pos = start + size
            if nargs == 0:
                args: tuple[bytes, ...] = ()
            elif nargs == 1:
                args = (body,)
            else:
                parts = body.split(b"\0", nargs - 1)
                if len(parts) != nargs:
                    self._reset()
                    raise ProtocolError(
                        f"{PacketType(ptype).name} needs {nargs} arguments, got {len(parts)}"
                    )
                args = tuple(parts)
            out.append(Packet(ptype, args, magic))
        rest = buf[pos:] if pos else buf
        self._chunks = [rest] if rest else []
        self._size = len(rest)
        self._need = need
        return out
