"""``gearmgr failed``: the failed-job record (SPEC.md "Failed jobs and poison jobs").

``gearmgr failed`` lists records newest first; ``show ID`` prints one whole; ``retry`` submits
records again as background jobs (same function, same workload bytes, a new unique id so that a
quarantined job can run again) and marks them retried; ``purge`` deletes records. Every
command reads the SQLite file the config names (``failed_jobs``), whether or not the supervisor
runs. Exit status: 0; 1 for an unknown id, a record that cannot be retried, a missing file or a
job server that cannot be reached (one line on stderr); 2 for bad arguments or config.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from gearmgr.cli.argtypes import server
from gearmgr.config import find_config_path, load_config
from gearmgr.errors import one_line
from gearmgr.failures.store import (
    WORKLOAD_LIMIT,
    FailedJobs,
    Record,
    RecordSettings,
    StoreError,
)
from gearmgr.logs import clip
from gearmgr.units import parse_duration
from gearmgr.wire.client import Client, GearmanError, ServerUnavailable
from gearmgr.words import plural

SHOWN_WORKLOAD = 1024  # bytes of the workload `show` prints
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot even be looked up


def duration(text: str) -> float:
    """argparse type of a DURATION option: ``30m``, ``7d``, ``3600``."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def record_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(
            f"expected a record id (a whole number >= 1), got {text!r}"
        )
    return value


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Declare ``gearmgr failed`` and its subcommands under ``sub``."""
    p = sub.add_parser(
        "failed",
        parents=[common],
        help="list, show, retry and purge failed jobs",
        description="The failed-job record. Without a subcommand: list records, newest first.",
    )
    _list_options(p)
    p.set_defaults(func=main, action="list")
    inner = p.add_subparsers(dest="action", metavar="ACTION")
    # -c after the subcommand too; SUPPRESS keeps a -c given before it
    again = argparse.ArgumentParser(add_help=False)
    again.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file (default: $GEARMGR_CONFIG, then ./gearmgr.yaml)",
    )
    q = inner.add_parser("list", parents=[again], help="list records, newest first (default)")
    _list_options(q, argparse.SUPPRESS)
    q = inner.add_parser("show", parents=[again], help="print one record whole")
    q.add_argument("id", metavar="ID", type=record_id, help="a record id, as the list shows")
    q.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON (the workload in base64)",
    )
    q = inner.add_parser("retry", parents=[again], help="submit records again as background jobs")
    q.add_argument("ids", metavar="ID", type=record_id, nargs="*", help="record ids")
    q.add_argument("--all", action="store_true", help="every record not retried yet")
    q.add_argument(
        "--function",
        metavar="F",
        default=argparse.SUPPRESS,
        help="with --all: only this function's records",
    )
    q.add_argument(
        "-s",
        "--server",
        dest="servers",
        metavar="HOST:PORT",
        type=server,
        action="append",
        help="job server to submit to; repeat for several (default: the config's servers)",
    )
    q = inner.add_parser("purge", parents=[again], help="delete records")
    q.add_argument("--older-than", metavar="DURATION", type=duration, help="e.g. 2d, 12h")
    q.add_argument(
        "--function", metavar="F", default=argparse.SUPPRESS, help="only this function's records"
    )


def _list_options(p: argparse.ArgumentParser, default: Any = None) -> None:
    """The list's options, on ``failed`` and on ``failed list``; ``default`` SUPPRESS on the
    subcommands, so that ``gearmgr failed --function F purge`` keeps F."""
    p.add_argument("--function", metavar="F", default=default, help="only this function's records")
    p.add_argument(
        "--since",
        metavar="DURATION",
        type=duration,
        default=default,
        help="only the last 1h, 2d...",
    )
    p.add_argument(
        "--json", action="store_true", default=default or False, help="print a JSON array"
    )


def open_store(args: argparse.Namespace) -> FailedJobs:
    """The record the config names (it must exist); ``args.job_servers``: where retry submits."""
    path = find_config_path(getattr(args, "config", None))
    config = load_config(path, check_system=False)
    if config.failed_jobs is None:
        raise StoreError(f"{path}: failed_jobs is none: failed jobs are not recorded")
    settings = RecordSettings(
        str(config.failed_jobs), config.failed_jobs_keep, config.failed_jobs_max
    )
    args.job_servers = getattr(args, "servers", None) or list(config.servers)
    return FailedJobs(settings, create=False)


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args.action = args.action or "list"
    if args.action == "retry" and not args.ids and not args.all:
        print("gearmgr: failed retry: give record ids, or --all", file=sys.stderr)
        return 2
    if args.action == "retry" and args.ids and args.all:
        print("gearmgr: failed retry: give record ids or --all, not both", file=sys.stderr)
        return 2
    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return 1
    try:
        return ACTIONS[args.action](store, args, out)
    except StoreError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def cmd_list(store: FailedJobs, args: argparse.Namespace, out: TextIO) -> int:
    """Rows written as they are read: memory bounded by one record, however many there are."""
    _prune(store)
    since = time.time() - args.since if args.since is not None else None
    records = store.iter_records(function=args.function, since=since, errors=args.json)
    if args.json:
        write_json_array((r.as_json() for r in records), out)
    else:
        write_list(records, out)
    return 0


def write_json_array(items: Iterable[dict[str, Any]], out: TextIO) -> None:
    """``json.dump(list(items), out, indent=1)`` and a newline, one item at a time: the same
    text, without the whole list in memory. Cut short (an error while reading), the array is
    left open, so that a reader sees that it is not complete."""
    opening = "[\n "
    for item in items:
        # json escapes a newline inside a string: every "\n" here is between lines
        out.write(opening + json.dumps(item, indent=1).replace("\n", "\n "))
        opening = ",\n "
    out.write("[]\n" if opening == "[\n " else "\n]\n")


def write_list(records: Iterable[Record], out: TextIO) -> None:
    """The table ``gearmgr failed`` prints, a line per record as it is read."""
    out.write(
        f"{'ID':>7}  {'TIME':<19}  {'FUNCTION':<20} {'UNIQUE':<36} {'REASON':<11} {'SIZE':>9}\n"
    )
    empty = True
    for r in records:
        retried = f"  retried {r.retried}x" if r.retried else ""
        out.write(
            f"{r.id:>7}  {_time(r.time):<19}  {clip(r.function, 20):<20} {clip(r.unique, 36):<36}"
            f" {r.reason:<11} {r.size:>9}{retried}\n"
        )
        empty = False
    if empty:
        out.write("(no failed jobs recorded)\n")


def cmd_show(store: FailedJobs, args: argparse.Namespace, out: TextIO) -> int:
    record = store.get(args.id)
    if record is None:
        return _unknown(store, [args.id])
    if args.json:
        shown = record.as_json()
        shown["workload_base64"] = base64.b64encode(record.workload or b"").decode()
        json.dump(shown, out, indent=1)
        out.write("\n")
        return 0
    out.write(format_record(record))
    return 0


def format_record(r: Record) -> str:
    data = r.workload or b""
    size = plural(r.size, "byte")
    if r.cut:
        size += f" (only the first {WORKLOAD_LIMIT} kept: it cannot be retried)"
    lines = [
        f"id:        {r.id}",
        f"time:      {_time(r.time)}",
        f"host:      {clip(r.host)}",
        f"function:  {clip(r.function)}",
        f"handle:    {clip(r.handle)}",
        f"unique:    {clip(r.unique) or '(none)'}",
        f"reason:    {r.reason}",
        f"deaths:    {r.deaths}",
        f"size:      {size}",
        f"retried:   {r.retried}",
        "error:",
        *("  " + clip(line, 1000) for line in r.error.splitlines()),
        f"workload (the first {min(len(data), SHOWN_WORKLOAD)} bytes):"
        if len(data) > SHOWN_WORKLOAD
        else "workload:",
        "  " + clip(data[:SHOWN_WORKLOAD], 4 * SHOWN_WORKLOAD),
    ]
    return "\n".join(lines) + "\n"


def cmd_retry(store: FailedJobs, args: argparse.Namespace, out: TextIO) -> int:
    if args.all:
        records = store.iter_records(function=args.function, errors=False)
        ids = sorted(r.id for r in records if not r.retried)
    else:
        ids = list(dict.fromkeys(args.ids))
    known = set(store.ids())  # each workload is read when it is submitted: one at a time
    missing = [i for i in ids if i not in known]
    if missing:
        return _unknown(store, missing)
    status = 0
    try:
        with Client(args.job_servers) as client:
            for i in ids:
                record = store.get(i)
                if record is None or record.workload is None:  # purged meanwhile
                    status = _unknown(store, [i])
                    continue
                if record.cut:
                    print(
                        f"gearmgr: failed job {i}: its workload ({record.size} bytes) was cut at"
                        f" {WORKLOAD_LIMIT} bytes when recorded: it cannot be retried",
                        file=sys.stderr,
                    )
                    status = 1
                    continue
                handle = client.submit(record.function, record.workload, background=True)
                store.mark_retried(i)
                out.write(f"retried {i} ({clip(record.function)}) as {clip(handle)}\n")
    except GearmanError as exc:
        hint = ""
        if isinstance(exc, ServerUnavailable) and not getattr(args, "servers", None):
            hint = "; name the job server with -s HOST:PORT"  # the config's were tried
        print(f"gearmgr: {one_line(str(exc), 2000)}{hint}", file=sys.stderr)
        return 1
    if not ids:
        out.write("no failed jobs to retry\n")
    return status


def cmd_purge(store: FailedJobs, args: argparse.Namespace, out: TextIO) -> int:
    deleted = store.purge(older_than=args.older_than, function=args.function)
    out.write(f"deleted {plural(deleted, 'record')}\n")
    return 0


def _unknown(store: FailedJobs, ids: list[int]) -> int:
    which = ", ".join(str(i) for i in ids)
    print(
        f"gearmgr: no failed job {which} in {store.settings.path} (`gearmgr failed` lists the ids)",
        file=sys.stderr,
    )
    return 1


def _prune(store: FailedJobs) -> None:
    """Retention applies when the commands read too (a read-only file: they read as it is)."""
    try:
        store.prune()
    except StoreError:
        pass


def _time(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


ACTIONS = {"list": cmd_list, "show": cmd_show, "retry": cmd_retry, "purge": cmd_purge}
