"""The ``gearmgr`` command line (SPEC.md "Command line")."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gearmgr.cli.argtypes import processes, seconds
from gearmgr.config import ENV_VAR, Config, ConfigError, find_config_path, load_config
from gearmgr.errors import ExitCode


class _NoConfig(argparse.Action):
    """``import-ini -c``: a usage error that says why, rather than a config silently ignored."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser.error(
            "import-ini takes no config file (-c): it reads FILE.ini and prints the YAML; "
            "redirect it to a file: gearmgr import-ini FILE.ini > gearmgr.yaml"
        )


def version() -> str:
    """gearmgr's version, from the installed package's metadata."""
    from gearmgr import __version__

    return __version__


def load(args: argparse.Namespace, check_system: bool = True) -> Config:
    path = find_config_path(args.config)
    if not args.config and not os.environ.get(ENV_VAR) and not path.exists():
        raise ConfigError(
            "does not exist, and no config was given: pass -c FILE (or set GEARMGR_CONFIG)",
            file=str(path),
        )
    return load_config(path, check_system=check_system)


def cmd_run(args: argparse.Namespace) -> int:
    from gearmgr.supervisor.arbiter import Supervisor

    config = load(args)
    return Supervisor(config, allow_root=args.allow_root or None, log_level=args.log_level).run()


def cmd_check(args: argparse.Namespace) -> int:
    from gearmgr.cli.check import check

    return check(load(args), out=sys.stdout)


def cmd_control(args: argparse.Namespace) -> int:
    from gearmgr.ops.control import run_command

    # status, stop and restart only need the control socket's path: a log folder or a user
    # that went away while the supervisor runs must not keep an operator from stopping it
    return run_command(load(args, check_system=args.command == "reload"), args.command, args)


def cmd_top(args: argparse.Namespace) -> int:
    from gearmgr.cli.top import run

    return run(load(args, check_system=False).control_socket, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gearmgr", description="Run pools of Gearman workers under one supervisor."
    )
    parser.add_argument("--version", action="version", version=f"gearmgr {version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="config file (default: $GEARMGR_CONFIG, then ./gearmgr.yaml)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    common.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", parents=[common], help="run the supervisor in the foreground")
    p.add_argument(
        "--allow-root",
        action="store_true",
        help="let workers run as root when no user is configured (also GEARMGR_ALLOW_ROOT=1)",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", parents=[common], help="validate the config and worker files")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("status", parents=[common], help="show the running supervisor's processes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_control)
    p = sub.add_parser("reload", parents=[common], help="reload the running supervisor (HUP)")
    p.set_defaults(func=cmd_control)
    p = sub.add_parser(
        "restart", parents=[common], help="replace one function's processes, one by one"
    )
    p.add_argument("function", metavar="FUNCTION", help="the function whose processes to replace")
    p.set_defaults(func=cmd_control)
    p = sub.add_parser(
        "scale", parents=[common], help="set one function's pool: MIN processes, up to MAX"
    )
    p.add_argument("function", metavar="FUNCTION", help="the function whose pool to size")
    p.add_argument("min", metavar="MIN", type=processes, help="the floor (0..1000)")
    p.add_argument(
        "max", metavar="MAX", type=processes, nargs="?", help="the ceiling (default: MIN)"
    )
    p.set_defaults(func=cmd_control)
    for name, what in (
        ("pause", "stop taking one function's jobs (they wait at the job servers)"),
        ("resume", "take a paused function's jobs again"),
    ):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("function", metavar="FUNCTION", help=f"the function to {name}")
        p.set_defaults(func=cmd_control)
    p = sub.add_parser("top", parents=[common], help="a live view of pools, queues and processes")
    p.add_argument(
        "--interval",
        metavar="SECONDS",
        type=seconds,
        default=1.0,
        help="seconds between refreshes, 0.1 to 3600 (default 1)",
    )
    p.add_argument("--once", action="store_true", help="print one frame as plain text and exit")
    p.set_defaults(func=cmd_top)
    p = sub.add_parser("stop", parents=[common], help="stop the running supervisor and wait")
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=None,
        help="give up waiting after this many seconds, exit 1 (default: wait forever)",
    )
    p.set_defaults(func=cmd_control)

    from gearmgr.cli import failed, import_ini, submit

    failed.add_parser(sub, common)

    p = sub.add_parser("submit", parents=[common], help="submit a job and print its result")
    submit.add_arguments(p)
    p.set_defaults(func=submit.main)
    # import-ini reads an ini file and needs no config: it takes no -c (a usage error).
    p = sub.add_parser("import-ini", help="convert a GearmanManager ini to YAML")
    p.add_argument("-c", "--config", nargs="?", action=_NoConfig, help=argparse.SUPPRESS)
    import_ini.add_arguments(p)
    p.set_defaults(func=import_ini.main)
    return parser


def log_level(args: argparse.Namespace) -> str | None:
    delta = getattr(args, "verbose", 0) - getattr(args, "quiet", 0)
    if delta == 0:
        return None
    order = ["error", "warning", "info", "debug"]
    return order[max(0, min(len(order) - 1, 2 + delta))]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.log_level = log_level(args)
    logging.basicConfig(level=logging.WARNING, format="gearmgr: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.FATAL
    except BrokenPipeError:  # `gearmgr check | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FATAL


if __name__ == "__main__":
    sys.exit(main())
