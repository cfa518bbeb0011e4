"""``gearmgr submit``: submit one job from the command line and print its result or handle.

The job servers: ``-s`` when given (repeatable); else the ``servers`` of the config: ``-c FILE``,
else ``$GEARMGR_CONFIG``, else ``./gearmgr.yaml`` if there is one; else 127.0.0.1:4730.

Exit status: 0 on success; 1 if the job failed, timed out, or no job server could be reached
(one line on stderr says which); 2 for bad arguments, such as a ``-s`` that is not HOST:PORT, or
a config (``-c`` or ``$GEARMGR_CONFIG``) that does not exist or does not load.
"""

from __future__ import annotations

import argparse
import os
import sys

from gearmgr.cli.argtypes import seconds, server
from gearmgr.config import ENV_VAR, find_config_path, load_config
from gearmgr.errors import one_line
from gearmgr.wire.client import DEFAULT_SERVER, Client, GearmanError, JobFailed, ServerUnavailable


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
        type=server,
        action="append",
        help="job server; repeat for several: each job goes to one, chosen by its unique id, "
        "the next one when it is down (default: the config's servers, "
        f"with -c FILE, $GEARMGR_CONFIG or ./gearmgr.yaml; else {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        help="give up waiting after this many seconds (default: wait forever)",
    )


def servers(args: argparse.Namespace) -> list[str]:
    """The job servers to submit to: ``-s``, else the config's, else the default one.

    A config named by ``-c`` or ``$GEARMGR_CONFIG`` must load (ConfigError otherwise, exit 2);
    ``./gearmgr.yaml`` is used only when it exists."""
    if args.servers:
        return list(args.servers)
    explicit = getattr(args, "config", None)
    path = find_config_path(explicit)
    if explicit or os.environ.get(ENV_VAR) or path.exists():
        return list(load_config(path).servers)
    return [DEFAULT_SERVER]


def main(args: argparse.Namespace) -> int:
    """Run ``gearmgr submit`` with parsed ``args``; return the exit status."""
    addresses = servers(args)  # before reading stdin: a bad config fails at once
    data: bytes | str = sys.stdin.buffer.read() if args.data == "-" else args.data
    try:
        with Client(addresses, timeout=args.timeout) as client:
            answer = client.submit(
                args.function,
                data,
                background=args.background,
                priority=args.priority,
                unique=args.unique,
            )
    except JobFailed as exc:
        reason = exc.exception or "; ".join(exc.warnings) or "no reason given by the worker"
        # the worker's or server's words, on one line, bounded: never escape codes on a tty
        print(f"gearmgr: job failed: {one_line(reason, 2000)}", file=sys.stderr)
        return 1
    except ServerUnavailable as exc:
        hint = ""
        if addresses == [DEFAULT_SERVER] and not args.servers:  # nobody named a server
            hint = "; name the job server with -s HOST:PORT, or its config with -c FILE"
        print(f"gearmgr: {one_line(str(exc), 2000)}{hint}", file=sys.stderr)
        return 1
    except GearmanError as exc:
        print(f"gearmgr: {one_line(str(exc), 2000)}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    out.write(answer.encode() if isinstance(answer, str) else answer)
    out.write(b"\n")
    out.flush()
    return 0
