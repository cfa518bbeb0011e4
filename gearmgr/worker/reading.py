"""The job path's read and write: one ``recv`` that comes back with a whole job of ours, split,
or with the bytes read for the session to decode (gearmgr.worker.loop's fast path); one write of
the reply and the next GRAB.

For a blocking socket.socket (every connection of a running worker) and with the C extension
built, the read is ``_speedups.recv_job`` on the socket's file descriptor: the recv into a
buffer kept for the process and the split of the job in one call, without socket.recv's
argument parsing or its 64 KiB allocation per read. Anything else (the extension not built,
``GEARMGR_PURE_PYTHON=1``, the stand-ins for sockets in tests and bench/job_path.py) reads with
the object's ``recv`` and splits with :func:`gearmgr.wire.protocol.assigned_job`: the same
results, the same exceptions.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial
from typing import Any

from gearmgr.compiled import speedups
from gearmgr.wire.protocol import assigned_job

#: Bytes asked of one recv(). Kept under glibc's default mmap threshold (128 KiB): CPython
#: allocates the whole size for each recv() and shrinks it after, and a 256 KiB request cost
#: an mmap + mremap + munmap per job whenever the threshold had not been raised. The C read
#: uses the same size (RECV_SIZE in gearmgr/_speedups.c).
RECV_SIZE = 65536

#: What a read returns: the fields of a whole JOB_ASSIGN_UNIQ of ours (handle, the function's
#: entry, unique id, workload) as a tuple, or the bytes read (b"": the server closed).
Read = Callable[[], "tuple[bytes, Any, bytes, bytes] | bytes"]
#: The loop of a busy worker in C (job_server): ``serve(jobs, refresh_at, seen, watch, until)``.
Serve = Callable[[int, float, int, tuple[tuple[int, int], ...], float], Any]


def job_reader(sock: Any, functions: dict[bytes, Any]) -> Read:
    """The read of the fast path on ``sock``, the jobs' functions looked up in ``functions``."""
    if speedups is not None and type(sock) is socket.socket and sock.gettimeout() is None:
        return partial(speedups.recv_job, sock.fileno(), functions)
    recv = sock.recv

    def read() -> tuple[bytes, Any, bytes, bytes] | bytes:
        data: bytes = recv(RECV_SIZE)
        fields = assigned_job(data, functions) if data else None
        return data if fields is None else fields

    return read


def complete_sender(sock: Any) -> Callable[[bytes, bytes, bytes], None] | None:
    """The job path's write on ``sock`` in C: ``send(handle, result, then)`` sends
    WORK_COMPLETE for ``handle`` with ``result`` and then ``then`` whole, as
    ``sock.sendall(work_complete(handle, result, then))`` does, without building the packet as
    bytes or socket.sendall's argument parsing. None without the extension or for anything but
    a blocking socket.socket: the loop then builds the packet and calls sendall."""
    if speedups is not None and type(sock) is socket.socket and sock.gettimeout() is None:
        return partial(speedups.send_complete, sock.fileno())
    return None


def job_server(sock: Any, functions: dict[bytes, Any], ctx: tuple[Any, ...]) -> Serve | None:
    """The loop of a busy worker in C on ``sock`` (gearmgr/_serve.c):
    ``serve(jobs, refresh_at, seen, watch, until)`` runs the jobs that follow one another, each
    read, run, counted and answered with the next GRAB, and returns what Python has to finish
    (``watch``: with several servers, the (fd, events) that send it back to the Python loop's
    poll() when ready; ``until``: that loop's next deadline).
    None without the extension or for anything but a blocking socket.socket."""
    if serves_in_c(sock):
        return partial(speedups.serve, sock.fileno(), functions, ctx)  # type: ignore[union-attr]
    return None


def serves_in_c(sock: Any) -> bool:
    """True when :func:`job_server` gives a loop in C for ``sock``."""
    return speedups is not None and type(sock) is socket.socket and sock.gettimeout() is None


def unbuilt(jobs: int, refresh_at: float, seen: int, watch: Any, until: float) -> Any:
    """The place of a connection's C loop until its first use (worker/serving.py): an idle
    worker never builds it, and so never writes the pages of what it refers to (USS)."""
    raise AssertionError("the C loop is built on its first use")
