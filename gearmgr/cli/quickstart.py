"""``make run``: the quick start's supervisor, on the job server its config names.

    python -m gearmgr.cli.quickstart -c CONFIG [--port PORT] [--external] [--allow-root]

(``make run CONFIG=... PORT=... EXTERNAL=1``). It reads the config's ``servers`` and
``embedded_server``; ``--port`` replaces the servers with ``127.0.0.1:PORT``. A config that embeds
its own gearmand on a port where another gearmand already answers (on Debian, the
``gearman-job-server`` service on 4730) is refused with what to do, unless ``--external`` says to
use that server. When it changes anything, it runs a copy of the config with the changes,
``.NAME-make-run.yaml`` beside it (so relative paths, the control socket and the queue file stay
where they were); otherwise it runs the config itself. Then it prints how to submit a job, on the
actual address, and runs ``gearmgr run``.

Exit status: that of ``gearmgr run``; 1 when it refuses to start; 2 when the config does not
load or ``--port`` is not a port.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from gearmgr.cli import main as cli
from gearmgr.config import Config, ConfigError, load_config
from gearmgr.errors import ExitCode
from gearmgr.supervisor.embedded import answers
from gearmgr.units import parse_address


def derived_path(config: Path) -> Path:
    """Where the copy with ``make run``'s changes is written: beside the config."""
    return config.with_name(f".{config.stem}-make-run.yaml")


def prepare(path: Path, port: int | None, external: bool, out: list[str]) -> tuple[Path, str] | int:
    """Decide what to run: (config file, job server address), or an exit status (refused).
    Lines for the user are appended to ``out``."""
    config: Config = load_config(path)
    servers = [f"127.0.0.1:{port}"] if port else list(config.servers)
    embedded = config.embedded_server
    host, server_port = parse_address(servers[0])
    taken = answers(host, server_port)
    if embedded and taken and not external:
        out.append(
            f"gearmgr: a gearmand already answers on {servers[0]} (Debian's gearman-job-server "
            f"service?), where {path} starts one of its own (embedded_server: true). Either "
            "use that server: make run EXTERNAL=1; or embed one on another port: "
            f"make run PORT={server_port + 1}; or stop the service first: "
            "sudo systemctl disable --now gearman-job-server"
        )
        return ExitCode.FATAL
    if external and not taken:
        out.append(
            f"gearmgr: EXTERNAL=1, but no gearmand answers on {servers[0]}: start it, "
            "or leave out EXTERNAL to let gearmgr embed its own"
        )
        return ExitCode.FATAL
    if external and embedded:
        out.append(f"gearmgr: using the gearmand that answers on {servers[0]} (EXTERNAL=1)")
        embedded = False
    elif not embedded and not taken:
        out.append(
            f"gearmgr: no job server answers on {servers[0]} yet: the workers keep retrying "
            "until one does"
        )
    if servers == list(config.servers) and embedded == config.embedded_server:
        return path, servers[0]
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.update(servers=servers, embedded_server=embedded)
    run_path = derived_path(path)
    run_path.write_text(
        f"# Written by `make run` from {path.name}, with servers and embedded_server changed by\n"
        f"# PORT= or EXTERNAL=1. Edit {path.name}, not this file: it is written at each start.\n"
        + yaml.safe_dump(data, sort_keys=False),
        encoding="utf-8",
    )
    return run_path, servers[0]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"PORT={text}: expected a TCP port, 1 to 65535")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make run", description="Run the quick start's supervisor on its config's server."
    )
    parser.add_argument("-c", "--config", metavar="FILE", default="etc/gearmgr.yaml")
    parser.add_argument("--port", metavar="PORT", type=_port, help="serve on 127.0.0.1:PORT")
    parser.add_argument("--external", action="store_true", help="use the gearmand already there")
    parser.add_argument("--allow-root", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.config)
    out: list[str] = []
    try:
        decided = prepare(path, args.port, args.external, out)
    except ConfigError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(f"gearmgr: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return ExitCode.FATAL
    for line in out:
        print(line, file=sys.stderr if isinstance(decided, int) else sys.stdout)
    if isinstance(decided, int):
        return decided
    run_path, server = decided
    host, port = parse_address(server)
    where = f"-p {port}" if host in ("127.0.0.1", "localhost") else f"-h {host} -p {port}"
    submit = os.path.relpath(Path(sys.executable).parent / "gearmgr")
    copy = ""
    if run_path != path:  # PORT= or EXTERNAL=1: a reload reads the copy, not the config
        copy = f", a copy of {path} for {server}: edits to {path} apply at the next make run"
    print(f"gearmgr: starting the supervisor with {run_path}{copy} (Ctrl-C stops it).")
    print(
        f"gearmgr: in another terminal: gearman {where} -f reverse hello   "
        f"(or: {submit} submit -s {server} reverse hello)",
        flush=True,
    )
    return cli.main(["run", "-c", str(run_path), *(["--allow-root"] if args.allow_root else [])])


if __name__ == "__main__":
    sys.exit(main())
