"""argparse types shared by the ``gearmgr`` subcommands: a value that does not parse is a usage
error (exit 2) whose one line says what was expected and what was given."""

from __future__ import annotations

import argparse

from gearmgr.units import parse_address


def seconds(text: str) -> float:
    """argparse type of a SECONDS option: a number above zero (else a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def server(text: str) -> str:
    """argparse type of a ``HOST:PORT`` option: an address :func:`parse_address` takes, kept as
    written (else a usage error, exit 2)."""
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def processes(text: str) -> int:
    """argparse type of a number of processes: a whole number 0..1000 (else exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..1000, got {text!r}")
    return value
