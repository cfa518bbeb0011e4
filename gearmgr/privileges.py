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


class PrivilegeError(Exception):
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
