"""Dropping privileges: setgid + initgroups + setuid, before any worker starts.

Files the supervisor must keep writing (log file, pid file, control socket) are created or
chowned first. Running workers as root without ``user`` is refused unless explicitly allowed
(``gearmgr run --allow-root`` or ``GEARMGR_ALLOW_ROOT=1``).
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from gearmgr.config import Config
from gearmgr.errors import FatalError


class PrivilegeError(FatalError):
    """The user or group does not exist, or the switch failed."""


def resolve(user: str | None, group: str | None) -> tuple[int, int, str] | None:
    """(uid, gid, user name) to switch to, or None for no switch."""
    if not user and not group:
        return None
    try:
        pw = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
    except KeyError:
        raise PrivilegeError(f"user: no such user {user!r}") from None
    gid = pw.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"group: no such group {group!r}") from None
    return pw.pw_uid, gid, pw.pw_name


def prepare_files(config: Config, uid: int, gid: int) -> None:
    """Hand the files the supervisor writes after the switch to the target user."""
    paths = [config.pid_file]
    if config.log_file and config.log_file != "syslog":
        paths.append(Path(config.log_file))
    for path in paths:
        if path is None:
            continue
        try:
            if not path.exists():
                path.touch(mode=0o640)
            os.chown(path, uid, gid)
        except OSError as exc:
            raise PrivilegeError(f"cannot prepare {path} for uid {uid}: {exc.strerror}") from exc


def drop(uid: int, gid: int, name: str) -> None:
    """setgid, initgroups, setuid: in that order, or the groups stay root's."""
    if os.getuid() == uid and os.getgid() == gid:
        return
    if os.geteuid() != 0:
        raise PrivilegeError(f"user: switching to {name!r} needs root")
    try:
        os.setgid(gid)
        os.initgroups(name, gid)
        os.setuid(uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to user {name!r}: {exc.strerror}") from exc


def access_problems(
    uid: int, gid: int, name: str, wanted: list[tuple[str, Path, int]]
) -> list[str]:
    """What the user ``name`` could not do after the switch: ``wanted`` lists (what, folder,
    ``os.access`` mode); each folder it lacks gives ``"cannot write in FOLDER (what)"``.

    Checked in a throwaway fork that switches first, so the answer is the user's own (with its
    groups and every folder on the way), while the supervisor still has the rights to clean up
    after a start that fails on it."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            drop(uid, gid, name)
            lacking: dict[tuple[str, Path], list[str]] = {}
            for what, path, mode in wanted:
                if not os.access(path, mode):
                    verb = "write in" if mode & os.W_OK else "read"
                    lacking.setdefault((verb, path), []).append(what)
            problems = [f"cannot {v} {p} ({'; '.join(w)})" for (v, p), w in lacking.items()]
            os.write(write_fd, "\n".join(problems).encode())
            code = 0
        except PrivilegeError as exc:
            os.write(write_fd, str(exc).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return [line for line in b"".join(chunks).decode().splitlines() if line]


def needed_access(config: Config) -> list[tuple[str, Path, int]]:
    """The folders the user must read or write in once the supervisor has switched to it, or
    the start fails. (The control socket and the pid file are created before the switch; a
    folder the user cannot write in only keeps them from being removed at exit, and the next
    start replaces them.)"""
    rx, wx = os.R_OK | os.X_OK, os.W_OK | os.X_OK
    wanted = [("worker_dirs", d, rx) for d in config.worker_dirs if d.is_dir()]
    if config.embedded_server:
        state_dir = config.path.parent if config.path else Path.cwd()
        wanted.append(("embedded_server's queue and log", state_dir, wx))
    return wanted
