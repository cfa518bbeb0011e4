"""The catalog of worker files the supervisor knows: where each function's file is, which
files fail to load (and why), and which changed since the last scan.

The supervisor never imports worker code: validation happens in a throwaway fork
(:func:`gearmgr.discovery.validate`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gearmgr.config import Config
from gearmgr.discovery import Discovery, Validation, discover

log = logging.getLogger("gearmgr.supervisor")


def file_signature(path: Path) -> tuple[int, str]:
    """What a worker file holds: its size and a digest of its bytes. Not its mtime: a file
    that touches itself when imported would otherwise look changed after every import, and
    with auto_reload replace its processes in a loop."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIGNED + 1)
    except OSError:
        return (0, "")
    return (len(data), hashlib.blake2b(data, digest_size=16).hexdigest())


MAX_SIGNED = 16 << 20  # bytes of a worker file read for its signature


VALIDATION_TIMEOUT = 20.0  # seconds the throwaway fork may take to import the files it checks


@dataclass
class Scan:
    """A scan of the worker folders whose validation may still be running."""

    found: Discovery
    signatures: dict[str, tuple[int, str]]
    validation: Validation | None


class Catalog:
    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.broken: dict[str, str] = {}  # function -> why its file does not load
        self.signatures: dict[str, tuple[int, str]] = {}  # worker file (size, digest)
        self.broken_since: dict[str, float] = {}  # monotonic time each file was found broken
        self._broken_logged: set[str] = set()
        self._reported: set[str] = set()

    def scan(
        self,
        config: Config,
        validate_all: bool = True,
        in_child: Callable[[], None] | None = None,
    ) -> set[str]:
        """Scan the worker folders and validate files in a throwaway fork (every file, or only
        new and changed ones), waiting for the answer. Returns the functions whose code changed
        and still loads; a changed file that no longer loads is logged and its running
        processes are kept."""
        pending = self.start_scan(config, validate_all, in_child)
        if pending.validation is None:
            return self.finish_scan(pending, {})
        return self.finish_scan(pending, pending.validation.wait())

    def start_scan(
        self,
        config: Config,
        validate_all: bool = True,
        in_child: Callable[[], None] | None = None,
    ) -> Scan:
        """Find the worker files and start validating the ones to check; the caller waits for
        ``validation`` (None when there is nothing to check) and calls :meth:`finish_scan`."""
        found: Discovery = discover(config.worker_dirs, config.include, config.exclude)
        for problem in found.problems:
            if problem not in self._reported:
                log.warning("%s", problem)
        self._reported = set(found.problems)
        signatures = {name: file_signature(path) for name, path in found.files.items()}
        if validate_all:
            todo = dict(found.files)
        else:
            todo = {n: p for n, p in found.files.items() if signatures[n] != self.signatures.get(n)}
        wanted = {n: config.function(n).concurrency for n in todo}
        job = Validation(todo, VALIDATION_TIMEOUT, in_child, wanted) if todo else None
        return Scan(found, signatures, job)

    def finish_scan(self, pending: Scan, results: dict[str, str | None]) -> set[str]:
        """Take in what the validation found; see :meth:`scan`."""
        found, signatures = pending.found, pending.signatures
        changed = set()
        for name, err in sorted(results.items()):
            known = name in self.signatures
            if err:
                if name not in self.broken:
                    self.broken_since[name] = time.monotonic()
                self.broken[name] = err
                if known and name not in self._broken_logged:
                    log.error(
                        "%s changed but fails to load; its running processes keep the old code: %s",
                        name,
                        err,
                    )
                elif name not in self._broken_logged:
                    log.error("worker file for %s fails to load: %s", name, err)
                self._broken_logged.add(name)
            else:
                self.broken.pop(name, None)
                self.broken_since.pop(name, None)
                self._broken_logged.discard(name)
                if known and signatures[name] != self.signatures[name]:
                    changed.add(name)
        for name in set(self.files) - set(found.files):
            log.info("worker file for %s removed", name)
        for name in set(found.files) - set(self.files):
            if self.files:
                log.info("worker file for %s added", name)
        self.files = found.files
        self.signatures = signatures
        for name in list(self.broken):
            if name not in found.files:
                del self.broken[name]
        if changed:
            log.info("code changed: %s", ", ".join(sorted(changed)))
        return changed

    def mark_fixed(self, name: str) -> None:
        """A process imported ``name``'s file after all: it is no longer broken."""
        self.broken.pop(name, None)
        self.broken_since.pop(name, None)
        self._broken_logged.discard(name)
        path = self.files.get(name)
        if path is not None:
            self.signatures[name] = file_signature(path)
