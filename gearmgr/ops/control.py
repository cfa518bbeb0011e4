"""The control socket: a unix socket (mode 0600) on which the running supervisor answers
``status``, ``reload``, ``stop`` and ``restart FUNCTION``; and the client side used by
``gearmgr status|reload|stop``.

One request per connection: a JSON object on one line (``{"command": "status"}``), answered by
one JSON object on one line. The supervisor serves it from its main loop.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gearmgr.config import Config
from gearmgr.errors import ExitCode, GearmgrError
from gearmgr.ops.listener import LATER, LATER_TIMEOUT, MAX_REQUEST, Deferred, Listener, Reply
from gearmgr.words import plural


class ControlError(GearmgrError):
    """The supervisor cannot be reached or refused the request."""


#: The commands a client may send, and the arguments each takes (name -> longest length).
COMMANDS: dict[str, dict[str, int]] = {
    "status": {},
    "reload": {},
    "stop": {},
    "restart": {"function": 256},
    "scale": {"function": 256, "min": 8, "max": 8},
    "pause": {"function": 256},
    "resume": {"function": 256},
    "top": {"interval": 16},  # gearmgr top: one request per refresh (ops/top.py)
}
MAX_NESTING = 8  # brackets in one request: a request is a flat object


class BadRequest(ControlError, ValueError):
    """A control request that is not one of :data:`COMMANDS` with its arguments."""


def parse_request(line: bytes) -> dict[str, str]:
    """Validate one request line: a flat JSON object naming a known command and its string
    arguments, each bounded. Raises :class:`BadRequest` saying what is wrong."""
    if line.count(b"[") + line.count(b"{") > MAX_NESTING:
        raise BadRequest("expected a flat JSON object")  # json would recurse on deep nesting
    try:
        request = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"not JSON: {str(exc)[:100]}") from None
    if not isinstance(request, dict):
        raise BadRequest("expected a JSON object")
    command = request.get("command")
    if not isinstance(command, str) or command not in COMMANDS:
        shown = command[:40] if isinstance(command, str) else command
        raise BadRequest(f"unknown command {shown!r}; known: {', '.join(COMMANDS)}")
    allowed = COMMANDS[command]
    args: dict[str, str] = {"command": command}
    for name, value in request.items():
        if name == "command":
            continue
        if name not in allowed:
            raise BadRequest(f"{command}: unexpected argument {str(name)[:40]!r}")
        if not isinstance(value, str) or len(value) > allowed[name]:
            raise BadRequest(f"{command}: {name} must be a string of at most {allowed[name]}")
        args[name] = value
    for name in allowed:
        if name not in args:
            raise BadRequest(f"{command}: missing argument {name!r}")
    return args


def encode_answer(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode() + b"\n"


#: A handler's second argument: call it once with the answer when it comes later.
AnswerLater = Callable[[dict[str, Any]], None]


class ControlServer(Listener):
    """The listening side, owned by the supervisor: one JSON line in, one JSON line out.

    ``handler(request, later)`` returns the answer, or None when it will call
    ``later(answer)`` itself (``reload`` answers once the outcome is known)."""

    def __init__(
        self, path: Path, handler: Callable[[dict[str, str], AnswerLater], dict[str, Any] | None]
    ) -> None:
        self.path = path
        self.handler = handler
        super().__init__(self._listen())

    def describe(self) -> str:
        return f"control socket {self.path}"

    def _listen(self) -> socket.socket:
        path = self.path
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ControlError(f"control_socket {path} exists and is not a socket")
            if _alive(path):
                raise ControlError(f"control_socket {path}: another gearmgr is running there")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise ControlError(f"control_socket {path}: {exc.strerror or exc}") from exc
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        return sock

    def complete(self, data: bytes) -> bool:
        return b"\n" in data

    def answer(self, data: bytes, reply: Reply) -> bytes | Deferred:
        line = data.split(b"\n", 1)[0]
        if len(line) > MAX_REQUEST:
            return self.error_answer(f"bad request: longer than {MAX_REQUEST} bytes")
        try:
            request = parse_request(line)
        except BadRequest as exc:
            return self.error_answer(f"bad request: {exc}")
        result = self.handler(request, lambda answer: reply.send(encode_answer(answer)))
        return LATER if result is None else encode_answer(result)

    def error_answer(self, message: str) -> bytes:
        return encode_answer({"ok": False, "error": message})

    def close(self) -> None:
        super().close()
        try:
            self.path.unlink()
        except OSError:
            pass


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def _alive(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(path))
            return True
    except OSError:
        return False


def request(path: Path, command: str, *, wait: float = 30.0, **args: Any) -> dict[str, Any]:
    """Send one command to the supervisor listening at ``path`` and return its answer; a
    refusal raises :class:`ControlError` (except for ``reload``, whose answer says why)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(wait)
            s.connect(str(path))
            s.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            answer = json.loads(_read_line(s) or b"null")
    except FileNotFoundError:
        raise ControlError(f"no gearmgr is running here: {path} does not exist") from None
    except ConnectionRefusedError:
        raise ControlError(f"no gearmgr is running here: nothing listens on {path}") from None
    except PermissionError:
        raise ControlError(
            f"not permitted to use {path} (mode 0600): run this as the user gearmgr runs as"
        ) from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot talk to gearmgr at {path}: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"gearmgr at {path} sent no answer")
    if not answer.get("ok", False) and "applied" not in answer:
        raise ControlError(answer.get("error", "request refused"))
    return answer


def run_command(config: Config, command: str, args: argparse.Namespace) -> int:
    """``gearmgr status|reload|stop|restart|scale|pause|resume``."""
    path = config.control_socket
    try:
        if command == "status":
            answer = request(path, "status")
            if args.json:
                answer.pop("ok", None)
                print(json.dumps(answer, indent=2))
            else:
                from gearmgr.ops.status import format_status

                print(format_status(answer))
        elif command == "reload":
            return _report_reload(request(path, "reload", wait=LATER_TIMEOUT))
        elif command == "stop":
            answer = request(path, "stop")
            pid = int(answer["pid"])
            print(f"gearmgr: stopping supervisor {pid}...", file=sys.stderr)
            _wait_gone(pid, getattr(args, "timeout", None))
            print("gearmgr: stopped", file=sys.stderr)
        elif command in ("scale", "pause", "resume"):
            extra: dict[str, Any] = {}
            if command == "scale":
                high = args.min if args.max is None else args.max
                if high < args.min:
                    print(f"gearmgr: expected MIN <= MAX, got {args.min} {high}", file=sys.stderr)
                    return ExitCode.USAGE
                extra = {"min": str(args.min), "max": str(high)}
            answer = request(path, command, function=args.function, **extra)
            print(f"gearmgr: {answer['changed']}")
        elif command == "restart":
            answer = request(path, "restart", function=args.function)
            count = plural(int(answer["processes"]), "process")
            print(f"gearmgr: replacing {count} of {args.function}")
    except ControlError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return ExitCode.FATAL
    return ExitCode.OK


def _report_reload(answer: dict[str, Any]) -> int:
    """Print what came of a reload; the exit code says it as `gearmgr check` would: 0 applied,
    1 applied but some worker files fail to load (they keep their old code), 2 the config does
    not load (nothing applied), 1 any other refusal."""
    if not answer.get("applied"):
        print(f"gearmgr: reload not applied: {answer.get('error', 'refused')}", file=sys.stderr)
        print("gearmgr: the supervisor keeps running what it ran", file=sys.stderr)
        return ExitCode.USAGE if answer.get("config_error") else ExitCode.FATAL
    broken = answer.get("broken") or {}
    if not broken:
        print("gearmgr: reload applied")
        return ExitCode.OK
    print(f"gearmgr: reload applied, but {len(broken)} worker file(s) fail to load:")
    for name, error in sorted(broken.items()):
        print(f"  {name}: {error}")
    print("gearmgr: processes already running them keep their old code; fix and reload again")
    return ExitCode.FATAL


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def _wait_gone(pid: int, timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if not _running(pid):
            return
        if deadline is not None and time.monotonic() > deadline:
            raise ControlError(f"supervisor {pid} still running after {timeout:g}s")
        time.sleep(0.05)
