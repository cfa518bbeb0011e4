"""The Gearman binary protocol's vocabulary: magics, header, packet types and their argument
counts, and the error raised on bytes that are not a valid packet (gearmand's ``PROTOCOL``
file). Imported by the codec (:mod:`gearmgr.wire.protocol`), which re-exports every name."""

from __future__ import annotations

import struct
from enum import IntEnum

from gearmgr.errors import GearmgrError

REQ = b"\0REQ"
RES = b"\0RES"
HEADER = struct.Struct(">4sII")
HEADER_SIZE = HEADER.size
#: Largest body accepted from a peer. gearmand itself has no hard limit; 1 GiB guards against
#: garbage that happens to start with a valid magic. The worker uses a lower limit of its own.
MAX_PACKET_SIZE = 1 << 30
#: How much of the body of a discarded (oversized) packet is kept: its first arguments.
DISCARD_HEAD = 4096


class ProtocolError(GearmgrError):
    """The peer sent bytes that are not a valid Gearman packet: close the connection."""


class PacketType(IntEnum):
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


T = PacketType

#: Number of arguments in each packet's body (the last one takes the rest of the body).
ARG_COUNT: dict[int, int] = {
    T.CAN_DO: 1,
    T.CANT_DO: 1,
    T.RESET_ABILITIES: 0,
    T.PRE_SLEEP: 0,
    T.NOOP: 0,
    T.SUBMIT_JOB: 3,
    T.JOB_CREATED: 1,
    T.GRAB_JOB: 0,
    T.NO_JOB: 0,
    T.JOB_ASSIGN: 3,
    T.WORK_STATUS: 3,
    T.WORK_COMPLETE: 2,
    T.WORK_FAIL: 1,
    T.GET_STATUS: 1,
    T.ECHO_REQ: 1,
    T.ECHO_RES: 1,
    T.SUBMIT_JOB_BG: 3,
    T.ERROR: 2,
    T.STATUS_RES: 5,
    T.SUBMIT_JOB_HIGH: 3,
    T.SET_CLIENT_ID: 1,
    T.CAN_DO_TIMEOUT: 2,
    T.ALL_YOURS: 0,
    T.WORK_EXCEPTION: 2,
    T.OPTION_REQ: 1,
    T.OPTION_RES: 1,
    T.WORK_DATA: 2,
    T.WORK_WARNING: 2,
    T.GRAB_JOB_UNIQ: 0,
    T.JOB_ASSIGN_UNIQ: 4,
    T.SUBMIT_JOB_HIGH_BG: 3,
    T.SUBMIT_JOB_LOW: 3,
    T.SUBMIT_JOB_LOW_BG: 3,
    T.SUBMIT_JOB_SCHED: 8,
    T.SUBMIT_JOB_EPOCH: 4,
    T.SUBMIT_REDUCE_JOB: 4,
    T.SUBMIT_REDUCE_JOB_BACKGROUND: 4,
    T.GRAB_JOB_ALL: 0,
    T.JOB_ASSIGN_ALL: 5,
    T.GET_STATUS_UNIQUE: 1,
    T.STATUS_RES_UNIQUE: 6,
}
