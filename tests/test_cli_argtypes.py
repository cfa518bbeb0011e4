"""argparse types of the gearmgr subcommands (gearmgr/cli/argtypes.py): usage errors that say
what was expected and what was given."""

from __future__ import annotations

import argparse

import pytest

from gearmgr.cli.argtypes import seconds, server


def test_seconds_takes_a_positive_finite_number() -> None:
    assert seconds("2.5") == 2.5
    for text in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(argparse.ArgumentTypeError, match="number of seconds above 0"):
            seconds(text)


def test_server_keeps_the_address_as_written_when_units_parses_it() -> None:
    assert server("gearman.example") == "gearman.example"
    assert server("[::1]:4731") == "[::1]:4731"
    with pytest.raises(argparse.ArgumentTypeError, match="65536"):
        server("127.0.0.1:65536")
