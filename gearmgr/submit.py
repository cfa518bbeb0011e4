"""``gearmgr submit``: submit one job from the command line and print its result or handle.

Exit status: 0 on success; 1 if the job failed, timed out, or no job server could be reached
(one line on stderr says which); 2 for bad arguments, such as a ``-s`` that is not HOST:PORT.
"""

from __future__ import annotations

import argparse
import sys

from gearmgr.client import DEFAULT_SERVER, Client, GearmanError, JobFailed
from gearmgr.units import parse_address


def _server(text: str) -> str:
    """argparse type of ``-s``: a ``HOST:PORT`` that parses (else a usage error, exit 2)."""
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``gearmgr submit`` on ``parser``."""
    parser.add_argument("function", metavar="FUNCTION", help="the function to run")
    parser.add_argument(
        "data",
        metavar="DATA",
        nargs="?",
        default="-",
        help="the workload; read from stdin when omitted or '-'",
    )
    parser.add_argument(
        "-b",
        "--background",
        action="store_true",
        help="do not wait for the result: print the job handle",
    )
    parser.add_argument(
        "--priority", choices=("high", "normal", "low"), default="normal", help="default: normal"
    )
    parser.add_argument(
        "--unique", metavar="ID", help="unique id: jobs sharing one run once (default: random)"
    )
    parser.add_argument(
        "-s",
        "--server",
        dest="servers",
        metavar="HOST:PORT",
        type=_server,
        action="append",
        help=f"job server; repeat for failover, tried in order (default: {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="give up waiting after this many seconds (default: wait forever)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``gearmgr submit`` with parsed ``args``; return the exit status."""
    data: bytes | str = sys.stdin.buffer.read() if args.data == "-" else args.data
    try:
        with Client(args.servers or [DEFAULT_SERVER], timeout=args.timeout) as client:
            answer = client.submit(
                args.function,
                data,
                background=args.background,
                priority=args.priority,
                unique=args.unique,
            )
    except JobFailed as exc:
        reason = exc.exception or "; ".join(exc.warnings) or "no reason given by the worker"
        print(f"gearmgr: job failed: {reason}", file=sys.stderr)
        return 1
    except GearmanError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    out.write(answer.encode() if isinstance(answer, str) else answer)
    out.write(b"\n")
    out.flush()
    return 0
