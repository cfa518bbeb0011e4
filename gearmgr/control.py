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
from gearmgr.listener import Listener
from gearmgr.words import plural

EXIT_OK, EXIT_FATAL = 0, 1


class ControlError(Exception):
    """The supervisor cannot be reached or refused the request."""


class ControlServer(Listener):
    """The listening side, owned by the supervisor: one JSON line in, one JSON line out."""

    def __init__(self, path: Path, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = path
        self.handler = handler
        super().__init__(self._listen())

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
            raise ControlError(f"control_socket {path}: {exc.strerror}") from exc
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        return sock

    def complete(self, data: bytes) -> bool:
        return b"\n" in data

    def answer(self, data: bytes) -> bytes:
        try:
            request = json.loads(data.split(b"\n", 1)[0])
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            result = self.handler(request)
        except ValueError as exc:
            result = {"ok": False, "error": f"bad request: {exc}"}
        return json.dumps(result).encode() + b"\n"

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


def request(path: Path, command: str, **args: Any) -> dict[str, Any]:
    """Send one command to the supervisor listening at ``path`` and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(path))
            s.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            answer = json.loads(_read_line(s) or b"null")
    except FileNotFoundError:
        raise ControlError(f"no gearmgr is running here: {path} does not exist") from None
    except ConnectionRefusedError:
        raise ControlError(f"no gearmgr is running here: nothing listens on {path}") from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot talk to gearmgr at {path}: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"gearmgr at {path} sent no answer")
    if not answer.get("ok", False):
        raise ControlError(answer.get("error", "request refused"))
    return answer


def run_command(config: Config, command: str, args: argparse.Namespace) -> int:
    """``gearmgr status|reload|stop``."""
    path = config.control_socket
    try:
        if command == "status":
            answer = request(path, "status")
            if args.json:
                answer.pop("ok", None)
                print(json.dumps(answer, indent=2))
            else:
                from gearmgr.status import format_status

                print(format_status(answer))
        elif command == "reload":
            request(path, "reload")
            print("gearmgr: reload requested")
        elif command == "stop":
            answer = request(path, "stop")
            pid = int(answer["pid"])
            print(f"gearmgr: stopping supervisor {pid}...", file=sys.stderr)
            _wait_gone(pid, getattr(args, "timeout", None))
            print("gearmgr: stopped", file=sys.stderr)
        elif command == "restart":
            answer = request(path, "restart", function=args.function)
            count = plural(int(answer["processes"]), "process")
            print(f"gearmgr: replacing {count} of {args.function}")
    except ControlError as exc:
        print(f"gearmgr: {exc}", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK


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
