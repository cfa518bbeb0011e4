"""The sans-IO codec (gearmgr.protocol) without a server: framing, splitting, errors, admin text."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearmgr.wire.protocol import (
    ARG_COUNT,
    DISCARD_HEAD,
    HEADER_SIZE,
    REQ,
    RES,
    AdminDecoder,
    Decoder,
    FunctionStatus,
    Packet,
    PacketType,
    ProtocolError,
    WorkerInfo,
    encode,
    parse_status,
    parse_workers,
)

T = PacketType
settings.register_profile("gearmgr", deadline=None, max_examples=200)
settings.load_profile("gearmgr")


def name(ptype: PacketType) -> str:
    return ptype.name


WITH_ARGS = [t for t in PacketType if ARG_COUNT[t] >= 1]
WITH_TWO_OR_MORE_ARGS = [t for t in PacketType if ARG_COUNT[t] >= 2]


def header(ptype: int, size: int, magic: bytes = RES) -> bytes:
    return struct.pack(">4sII", magic, ptype, size)


def sample_args(ptype: PacketType) -> tuple[bytes, ...]:
    """Arguments for ``ptype``: plain ones, then a last one holding NULs and high bytes."""
    n = ARG_COUNT[ptype]
    if n == 0:
        return ()
    return (*(f"arg{i}".encode() for i in range(n - 1)), b"last\0with\0nuls\xff")


def decode_all(data: bytes, expect: bytes = RES) -> list[Packet]:
    decoder = Decoder(expect)
    packets = decoder.feed(data)
    assert decoder.pending == 0
    return packets


# -- strategies -------------------------------------------------------------------------------

no_nul = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))
last_arg = st.binary(max_size=300)


@st.composite
def packets(draw: st.DrawFn, magic: bytes = RES) -> Packet:
    ptype = draw(st.sampled_from(list(PacketType)))
    n = ARG_COUNT[ptype]
    args = [draw(no_nul) for _ in range(n - 1)] + ([draw(last_arg)] if n else [])
    return Packet(ptype, tuple(args), magic)


def stream_of(sequence: list[Packet]) -> bytes:
    return b"".join(encode(p.type, *p.args, magic=p.magic) for p in sequence)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- the packet table -----------------------------------------------------------------------------


def test_every_packet_type_has_an_argument_count() -> None:
    assert set(ARG_COUNT) == set(PacketType)
    assert 5 not in ARG_COUNT  # unused in the protocol: the numbers skip it


def test_header_layout_matches_the_protocol_document() -> None:
    # \0REQ, type 16 (ECHO_REQ) and length 5, big-endian, then the body
    assert encode(T.ECHO_REQ, b"hello") == b"\0REQ\0\0\0\x10\0\0\0\x05hello"
    assert encode(T.SUBMIT_JOB, b"f", b"u", b"d") == b"\0REQ\0\0\0\x07\0\0\0\x05f\0u\0d"
    assert encode(T.NOOP, magic=RES) == b"\0RES\0\0\0\x06\0\0\0\0"


@pytest.mark.parametrize("magic", [REQ, RES], ids=["REQ", "RES"])
@pytest.mark.parametrize("ptype", list(PacketType), ids=name)
def test_every_packet_type_round_trips(ptype: PacketType, magic: bytes) -> None:
    args = sample_args(ptype)
    assert decode_all(encode(ptype, *args, magic=magic), expect=magic) == [
        Packet(ptype, args, magic)
    ]


@pytest.mark.parametrize(
    "ptype", [t for t in PacketType if ARG_COUNT[t] >= 1], ids=lambda t: t.name
)
def test_the_last_argument_keeps_its_nuls(ptype: PacketType) -> None:
    n = ARG_COUNT[ptype]
    args = (*(b"a" for _ in range(n - 1)), b"\0\0x\0")
    (packet,) = decode_all(encode(ptype, *args, magic=RES))
    assert packet.args[-1] == b"\0\0x\0"
    assert len(packet.args) == n


def test_empty_arguments_round_trip() -> None:
    packet = Packet(T.JOB_ASSIGN_UNIQ, (b"H:1", b"f", b"", b""))
    assert decode_all(encode(packet.type, *packet.args, magic=RES)) == [packet]


def test_packet_repr_names_the_type() -> None:
    assert repr(Packet(T.NOOP)) == "Packet(NOOP, ())"
    assert repr(Packet(99, (b"x",))) == "Packet(99, (b'x',))"


# -- streams: several packets, any split --------------------------------------------------------


def test_several_packets_in_one_feed() -> None:
    stream = (
        encode(T.NOOP, magic=RES)
        + encode(T.JOB_ASSIGN_UNIQ, b"H:vm:1", b"reverse", b"u1", b"abc", magic=RES)
        + encode(T.NO_JOB, magic=RES)
    )
    assert decode_all(stream) == [
        Packet(T.NOOP),
        Packet(T.JOB_ASSIGN_UNIQ, (b"H:vm:1", b"reverse", b"u1", b"abc")),
        Packet(T.NO_JOB),
    ]


def test_a_stream_split_at_every_byte_boundary_decodes_the_same() -> None:
    sequence = [Packet(t, sample_args(t)) for t in PacketType]
    stream = stream_of(sequence)
    for cut in range(len(stream) + 1):
        decoder = Decoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == sequence, f"split at byte {cut}"
        assert decoder.pending == 0


def test_a_stream_fed_one_byte_at_a_time() -> None:
    sequence = [Packet(t, sample_args(t)) for t in PacketType]
    decoder = Decoder()
    got: list[Packet] = []
    for i, byte in enumerate(stream_of(sequence)):
        got += decoder.feed(bytes([byte]))
        assert decoder.pending + sum(len(stream_of([p])) for p in got) == i + 1
    assert got == sequence


@given(st.lists(packets(), max_size=12))
def test_random_packet_sequences_round_trip(sequence: list[Packet]) -> None:
    assert decode_all(stream_of(sequence)) == sequence


@given(st.lists(packets(), min_size=1, max_size=12), st.lists(st.integers(min_value=0)))
def test_random_splits_decode_to_the_same_packets(sequence: list[Packet], cuts: list[int]) -> None:
    decoder = Decoder()
    got: list[Packet] = []
    for piece in split(stream_of(sequence), cuts):
        got += decoder.feed(piece)
    assert got == sequence
    assert decoder.pending == 0


@given(st.lists(packets(magic=REQ), min_size=1, max_size=8), st.lists(st.integers(min_value=0)))
def test_requests_decode_with_expect_req(sequence: list[Packet], cuts: list[int]) -> None:
    decoder = Decoder(expect=REQ)
    got = [p for piece in split(stream_of(sequence), cuts) for p in decoder.feed(piece)]
    assert got == sequence


def test_partial_header_and_partial_body_wait_for_more() -> None:
    data = encode(T.WORK_COMPLETE, b"H:1", b"result", magic=RES)
    decoder = Decoder()
    assert decoder.feed(data[:5]) == []
    assert decoder.pending == 5
    assert decoder.feed(data[5:15]) == []
    assert decoder.pending == 15
    assert decoder.feed(b"") == []
    assert decoder.feed(data[15:]) == [Packet(T.WORK_COMPLETE, (b"H:1", b"result"))]
    assert decoder.pending == 0


def test_a_large_body_in_many_small_reads() -> None:
    body = bytes(range(256)) * 16384  # 4 MiB
    data = encode(T.WORK_COMPLETE, b"H:1", body, magic=RES) + encode(T.NOOP, magic=RES)
    decoder = Decoder()
    got: list[Packet] = []
    for i in range(0, len(data), 4096):
        got += decoder.feed(data[i : i + 4096])
        if not got:
            assert decoder.pending == min(i + 4096, len(data))
    assert got == [Packet(T.WORK_COMPLETE, (b"H:1", body)), Packet(T.NOOP)]
    assert decoder.pending == 0


# -- malformed input ----------------------------------------------------------------------------


def test_bad_magic_raises() -> None:
    with pytest.raises(ProtocolError, match="bad magic"):
        Decoder(expect=RES).feed(encode(T.NOOP, magic=REQ))
    with pytest.raises(ProtocolError, match="bad magic"):
        Decoder(expect=REQ).feed(encode(T.NOOP, magic=RES))


def test_bad_magic_is_noticed_once_a_whole_header_has_arrived() -> None:
    decoder = Decoder()
    assert decoder.feed(b"HTTP/1.1 ") == []
    with pytest.raises(ProtocolError, match="bad magic"):
        decoder.feed(b"200 OK\r\n")


@pytest.mark.parametrize("ptype", [0, 5, 43, 2**32 - 1])
def test_unknown_packet_type_raises(ptype: int) -> None:
    with pytest.raises(ProtocolError, match=f"unknown packet type {ptype}"):
        Decoder().feed(header(ptype, 0))


def test_a_length_over_the_limit_raises_before_the_body_arrives() -> None:
    decoder = Decoder(max_size=16)
    assert decoder.feed(encode(T.ECHO_RES, b"x" * 16, magic=RES)) == [
        Packet(T.ECHO_RES, (b"x" * 16,))
    ]
    with pytest.raises(ProtocolError, match="17 bytes exceeds the limit of 16"):
        decoder.feed(header(T.ECHO_RES, 17))


@pytest.mark.parametrize(
    "ptype", [t for t in PacketType if ARG_COUNT[t] >= 2], ids=lambda t: t.name
)
def test_too_few_arguments_raise(ptype: PacketType) -> None:
    n = ARG_COUNT[ptype]
    data = encode(ptype, *(b"a" for _ in range(n - 1)), magic=RES)  # one NUL short
    with pytest.raises(ProtocolError, match=f"needs {n} arguments, got {n - 1}"):
        Decoder().feed(data)


def test_a_body_on_a_packet_without_arguments_is_ignored() -> None:
    data = header(T.NOOP, 3) + b"xyz" + encode(T.NO_JOB, magic=RES)
    assert decode_all(data) == [Packet(T.NOOP), Packet(T.NO_JOB)]


def test_after_an_error_the_decoder_holds_nothing_and_starts_afresh() -> None:
    """Documented behaviour: a ProtocolError drops everything the decoder held, packets
    completed earlier in the same feed included. Close the connection; the object may then
    decode a new connection's stream."""
    decoder = Decoder()
    good = encode(T.NOOP, magic=RES)
    assert decoder.feed(good + good[:3]) == [Packet(T.NOOP)]
    with pytest.raises(ProtocolError):
        decoder.feed(good[3:] + b"\0BAD" + good[4:] + good)
    assert decoder.pending == 0
    assert decoder.feed(good) == [Packet(T.NOOP)]


# -- the text admin protocol -------------------------------------------------------------------

STATUS_ANSWER = b"reverse\t3\t1\t2\nsleepy\t0\t0\t1\n.\n"


def test_admin_list_answer() -> None:
    assert AdminDecoder(expect_list=True).feed(STATUS_ANSWER) == [
        "reverse\t3\t1\t2",
        "sleepy\t0\t0\t1",
    ]


def test_admin_empty_list_answer() -> None:
    assert AdminDecoder(expect_list=True).feed(b".\n") == []


def test_admin_list_answer_split_at_every_byte() -> None:
    for cut in range(1, len(STATUS_ANSWER)):
        decoder = AdminDecoder(expect_list=True)
        assert decoder.feed(STATUS_ANSWER[:cut]) is None, f"complete too early at {cut}"
        assert decoder.feed(STATUS_ANSWER[cut:]) == ["reverse\t3\t1\t2", "sleepy\t0\t0\t1"]


def test_admin_list_answer_is_not_ended_by_a_dot_inside_a_line() -> None:
    decoder = AdminDecoder(expect_list=True)
    assert decoder.feed(b"a.b\t1\t0\t0\n.") is None
    assert decoder.feed(b"\n") == ["a.b\t1\t0\t0"]


def test_admin_single_line_answer() -> None:
    decoder = AdminDecoder(expect_list=False)
    assert decoder.feed(b"OK 1.1") is None
    assert decoder.feed(b".20+ds\n") == ["OK 1.1.20+ds"]


def test_admin_answers_with_crlf() -> None:
    assert AdminDecoder(expect_list=False).feed(b"OK 42\r\n") == ["OK 42"]
    assert AdminDecoder(expect_list=True).feed(b"f\t1\t0\t0\r\n.\r\n") == ["f\t1\t0\t0"]


@pytest.mark.parametrize("expect_list", [True, False])
def test_admin_err_line_raises(expect_list: bool) -> None:
    decoder = AdminDecoder(expect_list)
    with pytest.raises(ProtocolError, match="ERR UNKNOWN_COMMAND"):
        decoder.feed(b"ERR UNKNOWN_COMMAND Unknown+server+command\n")


function_names = st.text(
    st.characters(blacklist_characters="\t\r\n\0", blacklist_categories=("Cs",)), min_size=1
).filter(lambda s: s != ".")
status_rows = st.lists(
    st.builds(
        FunctionStatus,
        function_names,
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.integers(0, 10**4),
    ),
    max_size=20,
)


@given(status_rows, st.lists(st.integers(min_value=0)))
def test_status_answers_parse_back_whatever_the_split(
    rows: list[FunctionStatus], cuts: list[int]
) -> None:
    text = "".join(f"{r.function}\t{r.total}\t{r.running}\t{r.workers}\n" for r in rows) + ".\n"
    decoder = AdminDecoder(expect_list=True)
    answers = [decoder.feed(piece) for piece in split(text.encode(), cuts) if piece]
    assert all(answer is None for answer in answers[:-1])
    assert answers[-1] is not None
    assert parse_status(answers[-1]) == rows


def test_parse_status() -> None:
    assert parse_status(["reverse\t3\t1\t2", "sleepy\t0\t0\t1"]) == [
        FunctionStatus("reverse", 3, 1, 2),
        FunctionStatus("sleepy", 0, 0, 1),
    ]
    assert parse_status([]) == []


@pytest.mark.parametrize(
    "line", ["reverse\t3\t1", "reverse\t3\t1\t2\t9", "reverse\tx\t1\t2", "", "reverse 3 1 2"]
)
def test_parse_status_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ProtocolError, match="unexpected status line"):
        parse_status([line])


def test_parse_workers() -> None:
    assert parse_workers(
        [
            "33 127.0.0.1 gearmgr:host:123 : reverse sleepy",
            "34 127.0.0.1 - :",
            "35 ::1 my worker : echo",
            "36 10.0.0.7 id : with : colons : f1 :f2",
        ]
    ) == [
        WorkerInfo(33, "127.0.0.1", "gearmgr:host:123", ("reverse", "sleepy")),
        WorkerInfo(34, "127.0.0.1", "-", ()),
        WorkerInfo(35, "::1", "my worker", ("echo",)),
        WorkerInfo(36, "10.0.0.7", "id : with : colons", ("f1", ":f2")),
    ]


@pytest.mark.parametrize(
    "line", ["33 127.0.0.1 id reverse", "x 127.0.0.1 - : f", "33 127.0.0.1", "", "33"]
)
def test_parse_workers_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ProtocolError, match="unexpected workers line"):
        parse_workers([line])


def test_a_status_row_of_a_function_named_err_is_not_an_error() -> None:
    # found by Hypothesis: only a line without tabs is an ERR answer
    assert AdminDecoder(expect_list=True).feed(b"ERR x\t1\t0\t0\n.\n") == ["ERR x\t1\t0\t0"]


# -- oversized packets: discarded, not held ----------------------------------------------------

DISCARDING = frozenset({T.JOB_ASSIGN_UNIQ})


@given(st.lists(st.integers(min_value=0), max_size=6), st.integers(min_value=0, max_value=3000))
def test_an_oversized_packet_of_a_discarded_type_comes_back_without_its_body(
    cuts: list[int], extra: int
) -> None:
    big = encode(T.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"u", b"y" * (100 + extra), magic=RES)
    noop = encode(T.NOOP, magic=RES)
    decoder = Decoder(max_size=100, discard=DISCARDING)
    out: list[Packet] = []
    for piece in split(noop + big + noop, cuts):
        out += decoder.feed(piece)
        assert decoder._size <= len(piece) + HEADER_SIZE  # the body is never accumulated
    size = len(big) - HEADER_SIZE
    assert out == [
        Packet(T.NOOP),
        Packet(T.JOB_ASSIGN_UNIQ, (b"H:1", b"fn", b"u"), RES, size),
        Packet(T.NOOP),
    ]
    assert decoder.pending == 0


def test_an_oversized_packet_keeps_only_the_arguments_in_its_first_bytes() -> None:
    handle = b"H" * (DISCARD_HEAD + 10)
    data = encode(T.JOB_ASSIGN_UNIQ, handle, b"fn", b"u", b"y", magic=RES)
    [packet] = Decoder(max_size=100, discard=DISCARDING).feed(data)
    assert packet.args == () and packet.oversize == len(data) - HEADER_SIZE


def test_an_oversized_packet_of_another_type_still_raises_at_its_header() -> None:
    decoder = Decoder(max_size=100, discard=DISCARDING)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(header(T.ECHO_RES, 2**32 - 1))


def test_a_declared_4_gib_job_is_discarded_as_it_arrives() -> None:
    decoder = Decoder(max_size=1 << 20, discard=DISCARDING)
    assert decoder.feed(header(T.JOB_ASSIGN_UNIQ, 2**32 - 1) + b"H:2\0f\0") == []
    chunk = b"\0" * (1 << 20)
    for _ in range(8):
        assert decoder.feed(chunk) == []
    assert decoder.pending == 2**32 - 1 - 6 - 8 * len(chunk)
    assert decoder._size == 0
