"""Durations, sizes and addresses as users write them (gearmgr/units.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearmgr.units import (
    MAX_DURATION,
    MAX_SIZE,
    format_address,
    format_duration,
    format_size,
    is_loopback,
    parse_address,
    parse_duration,
    parse_size,
    show_value,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (0, 0.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("30 s", 30.0),
        (" 5m ", 300.0),
        ("5M", 300.0),
        ("250MS", 0.25),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("1d12h", 129600.0),
        ("1m30s", 90.0),
        ("1s250ms", 1.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("lots", '"lots"'),
        ("", '""'),
        ("-5s", '"-5s"'),
        ("5w", '"5w"'),
        ("s", '"s"'),
        ("1h30", '"1h30"'),
        (-1, "-1"),
        (True, "true"),
        (None, "null"),
        ([1], "[1]"),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
    ],
)
def test_parse_duration_rejects(value: object, shown: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f'expected a duration like "30s" or "250ms", got {shown}'


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (1000, 1000),
        (1024.0, 1024),
        ("100", 100),
        ("100B", 100),
        ("512KiB", 512 * 1024),
        ("256MiB", 268435456),
        ("1GiB", 1024**3),
        ("1TiB", 1024**4),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("256mib", 268435456),
        ("64 MiB", 64 * 1024**2),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


def short_id(value: object) -> str:
    """A test id pytest can print (``str()`` refuses integers of over 4300 digits)."""
    return show_value(value)[:20]


@pytest.mark.parametrize(
    "value",
    [MAX_DURATION + 0.001, "577h", "24000000", math.inf, 10**30, 10**5000, "9" * 400],
    ids=short_id,
)
def test_parse_duration_refuses_what_a_timer_cannot_wait(value: object) -> None:
    # A poll()/epoll wait takes a C int of milliseconds: 2**31 ms is 24.8 days, and a longer
    # timeout raised OverflowError in the worker's watchdog on its first job.
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value).startswith("expected a duration of at most 576h (24 days), got ")


def test_the_longest_duration_is_accepted() -> None:
    assert parse_duration("576h") == MAX_DURATION
    assert MAX_DURATION * 1000 < 2**31


@pytest.mark.parametrize(
    "value", ["1025TiB", MAX_SIZE + 1, 10**30, 10**5000, "9" * 400, math.inf], ids=short_id
)
def test_parse_size_has_a_ceiling(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert str(caught.value).startswith("expected a size of at most 1024TiB, got ")


def test_parse_size_up_to_the_ceiling() -> None:
    assert parse_size("1024TiB") == MAX_SIZE


@pytest.mark.parametrize("value", ["lots", "256MB", "1GB", "1K", "", "-1MiB", -1, 1.5, True, None])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r'^expected a size like "256MiB", got '):
        parse_size(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30.0, "30s"),
        (0.25, "250ms"),
        (0, "0s"),
        (300, "5m"),
        (7200, "2h"),
        (5400, "1h30m"),
        (3725, "1h2m5s"),
        (1.5, "1.5s"),
        (0.001, "1ms"),
        (1e-7, "0.0000001s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(268435456, "256MiB"), (0, "0B"), (1536, "1536B"), (1024, "1KiB"), (3 * 1024**4, "3TiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.floats(min_value=0, max_value=MAX_DURATION, allow_nan=False, allow_infinity=False))
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**50))
def test_format_size_reads_back_exactly(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(st.integers(min_value=0, max_value=576), st.sampled_from(["ms", "s", "m", "h"]))
def test_whole_numbers_with_a_unit_read_back(number: int, unit: str) -> None:
    seconds = parse_duration(f"{number}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("gm1", ("gm1", 4730)),
        ("gm1:4731", ("gm1", 4731)),
        (" 10.0.0.5 ", ("10.0.0.5", 4730)),
        ("[::1]:4731", ("::1", 4731)),
        ("[::1]", ("::1", 4730)),
        ("::1", ("::1", 4730)),
        ("fe80::1", ("fe80::1", 4730)),
    ],
)
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":4730",
        "gm1:",
        "gm1:http",
        "gm1:0",
        "gm1:65536",
        "[::1",
        "[::1]x",
        "gm1:\u0664\u0667\u0663\u0660",  # Arabic-Indic digits: int() reads them, sockets don't
        "gm1:\u00b2",  # isdigit() but int() raises
        "gm1:" + "0" * 5000 + "1",  # int() refuses more than 4300 digits
    ],
    ids=short_id,
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r'^expected "HOST:PORT", got '):
        parse_address(text)


def test_parse_address_can_require_a_port() -> None:
    assert parse_address("0.0.0.0:9464", default_port=None) == ("0.0.0.0", 9464)
    with pytest.raises(ValueError):
        parse_address("0.0.0.0", default_port=None)


def test_format_address_brackets_ipv6() -> None:
    assert format_address("::1", 4730) == "[::1]:4730"
    assert format_address("gm1", 4730) == "gm1:4730"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
     ("10.0.0.5", False), ("0.0.0.0", False), ("gm1", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_show_value_quotes_like_yaml_and_stays_short() -> None:
    assert show_value("lots") == '"lots"'
    assert show_value(5) == "5"
    assert show_value(False) == "false"
    assert show_value({"a": 1}) == '{"a": 1}'
    assert len(show_value("x" * 500)) == 60


def test_show_value_never_raises_and_stays_one_printable_line() -> None:
    assert show_value(10**5000) == "an integer of 5001 digits"
    nested: list[object] = []
    for _ in range(5000):
        nested = [nested]
    assert show_value(nested).startswith("a list") or show_value(nested).startswith("[[[")
    shown = show_value("a\x00b\nc\x85d\ud800")
    assert shown == '"a\\u0000b\\nc\\u0085d\\ud800"'
    shown.encode("utf-8")  # no lone surrogate left to break a terminal or a log file
