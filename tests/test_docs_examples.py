"""Every code block of README.md and docs/*.md is run or compared here, so the docs cannot drift.

Each page runs in a fresh copy of what its commands expect (a "checkout": etc/gearmgr.yaml,
workers/, .venv/bin/gearmgr) with the real `gearmgr run` of etc/gearmgr.yaml and its embedded
gearmand on a free port: the docs say 127.0.0.1:4730, the test substitutes its port, and `gearman`
and `gearmgr submit` without a server are pointed at it. Blocks run in page order, as a reader
would run them. How a block is treated: tests/docblocks.py and docs/architecture.md ("Tests").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gearmgr.config import parse_config
from tests.docblocks import (
    DIRECTIVES,
    PAGES,
    ROOT,
    RUNNABLE,
    Block,
    blocks,
    console_steps,
    normalize,
    strip_comments,
)
from tests.support import free_port, function_status, wait_for, which

DOC_PORT = "4730"
DOC_HOME = "/home/me/gearmgr"  # where the docs' reader cloned the repository

# Set-ups named by `<!-- doctest: setup NAME -->`: files written into the checkout first
# (/srv/app is the folder srv-app of the checkout).
SETUPS: dict[str, dict[str, str]] = {
    # workers.md, "Checking worker files": the example workers and three broken files
    "broken-files": {
        "srv-app/gearmgr.yaml": 'servers: ["127.0.0.1:4730"]\n',
        **{
            f"srv-app/workers/{name}.py": (ROOT / "workers" / f"{name}.py").read_text()
            for name in ("counter", "fail", "reverse", "word_count")
        },
        "srv-app/workers/my-func.py": "def my_func(job):\n    return ''\n",
        "srv-app/workers/notify.py": "def send_notification(job):\n    return ''\n",
        "srv-app/workers/thumbnail.py": "import pyvips\n\n\ndef thumbnail(job):\n    return ''\n",
    },
}


class Checkout:
    """A copy of the files the docs' commands use, served by a real `gearmgr run`."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp / "gearmgr"
        shutil.copytree(ROOT / "workers", self.dir / "workers")
        (self.dir / "etc").mkdir()
        (self.dir / "etc" / "gearmgr.yaml").write_text(
            self.sub((ROOT / "etc/gearmgr.yaml").read_text())
        )
        bin_dir = self.dir / "bin"
        venv_bin = self.dir / ".venv" / "bin"
        for folder in (bin_dir, venv_bin):
            folder.mkdir(parents=True)
        gearman = which("gearman")
        assert gearman, "the gearman tool is missing: `make test` installs gearman-tools"
        self._script(bin_dir / "gearman", f'exec {gearman} -h 127.0.0.1 -p {self.port} "$@"')
        # `gearmgr submit` without -s or -c goes to 127.0.0.1:4730: send it to the test's port
        self._script(
            venv_bin / "gearmgr",
            f'if [ "$1" = submit ]; then case " $* " in *" -s "*|*" -c "*) ;; '
            f'*) shift; set -- submit -s 127.0.0.1:{self.port} "$@";; esac; fi\n'
            f'exec {sys.executable} -m gearmgr "$@"',
        )
        (bin_dir / "gearmgr").symlink_to(venv_bin / "gearmgr")
        (venv_bin / "python").symlink_to(sys.executable)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}:/usr/sbin:/sbin",
            "GEARMGR_ALLOW_ROOT": "1",
            "PYTHONPATH": str(ROOT),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _script(path: Path, body: str) -> None:
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def sub(self, text: str) -> str:
        """The docs' text with the test's port and paths."""
        text = re.sub(rf"\b{DOC_PORT}\b", str(self.port), text)
        text = text.replace("/srv/app", str(self.dir / "srv-app"))
        return text.replace("/run/gearmgr/gearmgr.sock", str(self.dir / "etc" / "gearmgr.sock"))

    def unsub(self, output: str) -> str:
        """Real output with the docs' port and paths."""
        output = re.sub(rf"\b{self.port}\b", DOC_PORT, output)
        output = output.replace(str(self.dir / "srv-app"), "/srv/app")
        return output.replace(str(self.dir), DOC_HOME)

    def run(self, args: str | list[str], timeout: float = 30.0) -> tuple[int, str]:
        """Run a command in the checkout; stdout and stderr together, as a terminal shows them."""
        command = ["bash", "-c", args] if isinstance(args, str) else args
        result = subprocess.run(
            command,
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        return result.returncode, self.unsub(result.stdout.decode(errors="replace"))

    def start(self) -> None:
        self.log = open(self.dir / "supervisor.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gearmgr", "run", "-c", "etc/gearmgr.yaml"],
            cwd=self.dir,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        expected = {"reverse": 2, "word_count": 1, "counter": 1, "fail": 1}
        wait_for(lambda: self._registered(expected), timeout=20, what="the example workers")

    def _registered(self, expected: dict[str, int]) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.dir / "supervisor.log").read_text()
            raise AssertionError(f"gearmgr run exited with {self.proc.returncode}:\n{log}")
        try:
            status = function_status(self.port)
        except OSError:
            return False
        return all(status.get(f, (0, 0, 0))[2] >= n for f, n in expected.items())

    def workers_of(self, function: str) -> int:
        return function_status(self.port).get(function, (0, 0, 0))[2]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGQUIT)
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.log.close()


class PageRun:
    """Runs the blocks of one page in order; collects every mismatch."""

    def __init__(self, checkout: Checkout) -> None:
        self.co = checkout
        self.failures: list[str] = []
        self.last_output: str | None = None

    def fail(self, block: Block, message: str) -> None:
        self.failures.append(f"{block.where}: {message}")

    def expect_run(self, block: Block, args: str | list[str], what: str) -> str:
        code, out = self.co.run(args)
        if code != 0:
            self.fail(block, f"{what} exited with {code}:\n{out}")
        self.last_output = out
        return out

    def block(self, block: Block) -> None:
        d = block.directives
        if "setup" in d:
            for name, content in SETUPS[d["setup"]].items():
                (self.co.dir / name).parent.mkdir(parents=True, exist_ok=True)
                (self.co.dir / name).write_text(self.co.sub(content))
        if "same-as" in d:
            path, _, how = d["same-as"].partition(" ")
            shown, real = block.text, (ROOT / path).read_text()
            if how == "without its comments":
                real = "".join(x for x in real.splitlines(True) if not x.lstrip().startswith("#"))
            if shown != real:
                self.fail(block, f"differs from {path}")
        elif "output" in d:
            shown, real = normalize(block.text), normalize(self.last_output or "")
            if d["output"] == "any order":
                shown, real = sorted(shown.splitlines()), sorted(real.splitlines())
            if self.last_output is None or real != shown:
                self.fail(block, f"the block above prints, instead:\n{self.last_output}")
        else:
            getattr(self, f"lang_{block.lang}")(block)

    def lang_yaml(self, block: Block) -> None:
        parse_config(block.text, "/etc/gearmgr/gearmgr.yaml")

    def lang_json(self, block: Block) -> None:
        shown = json.loads(block.text)
        if isinstance(shown, dict) and "processes" in shown:  # `gearmgr status --json`
            out = self.expect_run(block, "gearmgr status --json -c etc/gearmgr.yaml", "status")
            if _fields(shown) != _fields(json.loads(out)):
                self.fail(block, f"has other fields than `gearmgr status --json`:\n{out}")

    def lang_python(self, block: Block) -> None:
        first = block.text.splitlines()[0]
        named = first[2:].split()[0] if first.startswith("# ") and ".py" in first else None
        if named and "pytest" in block.directives:
            (self.co.dir / named).parent.mkdir(parents=True, exist_ok=True)
            (self.co.dir / named).write_text(self.co.sub(block.text))
            self.expect_run(
                block,
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", named],
                "pytest",
            )
        elif "serve" in block.directives:
            self._serve(block, named or "serve.py", block.directives["serve"])
        elif named and (ROOT / named).exists():
            shown, real = strip_comments(block.text), strip_comments((ROOT / named).read_text())
            if not any(real[i : i + len(shown)] == shown for i in range(len(real))):
                self.fail(block, f"is not the code of {named}")
        else:
            script = self.co.dir / "example.py"
            script.write_text(self.co.sub(block.text))
            out = self.expect_run(block, [sys.executable, str(script)], "the example")
            for line in block.text.splitlines():
                comment = re.search(r"print\(.*\)\s+# (.*)$", line)
                if comment and comment.group(1) not in out.splitlines():
                    self.fail(block, f"does not print {comment.group(1)}; it prints:\n{out}")

    def _serve(self, block: Block, name: str, function: str) -> None:
        (self.co.dir / name).write_text(self.co.sub(block.text))
        before = self.co.workers_of(function)
        proc = subprocess.Popen([sys.executable, name], cwd=self.co.dir, env=self.co.env)
        try:
            wait_for(lambda: self.co.workers_of(function) > before, timeout=10, what=name)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=10)
        if code != 0:
            self.fail(block, f"{name} exited with {code} on SIGINT")

    def lang_console(self, block: Block) -> None:
        code = 0
        for command, shown in console_steps(block.text):
            # `(exit N)` first: `$?` is the status of the command shown above, as in a shell
            code, out = self.co.run(f"(exit {code}); " + self.co.sub(command))
            self.last_output = out
            if normalize(out) != normalize(shown):
                self.fail(block, f"`{command}` prints\n{out}\ninstead of\n{shown}")

    def lang_sh(self, block: Block) -> None:
        if "# -> " not in block.text:
            self.expect_run(block, "set -e\n" + self.co.sub(block.text), "the script")
            return
        for line in block.text.splitlines():
            command, _, shown = line.partition("# -> ")
            if command.strip() and not command.lstrip().startswith("#"):
                out = self.expect_run(block, self.co.sub(command), f"`{command.strip()}`")
                if shown and out.strip() != shown.strip():
                    self.fail(block, f"`{command.strip()}` prints {out!r}, not {shown.strip()!r}")

    def lang_php(self, block: Block) -> None:
        php = which("php")
        assert php, "php is missing: `make test` installs php-cli and php-gearman"
        (self.co.dir / "example.php").write_text(self.co.sub(block.text))
        self.expect_run(block, [php, "example.php"], "php")

    def lang_perl(self, block: Block) -> None:
        # a terminal shows stdout and stderr in the order they are written: flush as a tty would
        (self.co.dir / "AutoFlush.pm").write_text("package AutoFlush; $| = 1; 1;\n")
        (self.co.dir / "example.pl").write_text(self.co.sub(block.text))
        self.expect_run(block, ["perl", "-I.", "-MAutoFlush", "example.pl"], "perl")


def _fields(status: dict) -> dict[str, list[str]]:
    """The field names of a status: top level, a server, a process, a function."""
    return {
        "": sorted(status),
        "servers": sorted(status["servers"][0]),
        "processes": sorted(status["processes"][0]),
        "functions": sorted(next(iter(status["functions"].values()))),
    }


def _marks_are_valid(page_blocks: list[Block]) -> list[str]:
    problems = []
    for block in page_blocks:
        for name, value in block.directives.items():
            if name not in DIRECTIVES:
                problems.append(f"{block.where}: unknown doctest directive {name!r}")
            elif name == "skip" and not value:
                problems.append(f"{block.where}: `doctest: skip` needs a reason")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples(page: Path, tmp_path: Path) -> None:
    page_blocks = blocks(page)
    problems = _marks_are_valid(page_blocks)
    todo = [
        b
        for b in page_blocks
        if "skip" not in b.directives and (b.lang in RUNNABLE or set(b.directives) & DIRECTIVES)
    ]
    if todo:
        checkout = Checkout(tmp_path)
        checkout.start()
        run = PageRun(checkout)
        try:
            for block in todo:
                run.block(block)
        finally:
            checkout.stop()
        problems += run.failures
    assert not problems, "\n\n".join(problems)


def test_every_page_has_blocks_and_the_parser_finds_them() -> None:
    found = {page.name: blocks(page) for page in PAGES}
    assert "clients.md" in found and "quickstart.md" in found
    perl = [b for b in found["clients.md"] if b.lang == "perl"]
    assert len(perl) == 1 and "Gearman::Client" in perl[0].text


def test_the_module_table_names_every_module() -> None:
    """Every module under gearmgr/, in any folder, has a row by its path (`supervisor/pool.py`);
    a package's __init__.py may be listed as the package (`config/`)."""
    table = (ROOT / "docs" / "architecture.md").read_text().split("## Modules", 1)[1]
    table = table.split("\n## ", 1)[0]
    package = ROOT / "gearmgr"
    missing = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(package).as_posix()
        names = {f"`{rel}`"}
        if path.name == "__init__.py" and path.parent != package:
            names.add(f"`{path.parent.relative_to(package).as_posix()}/`")
        if not any(name in table for name in names):
            missing.append(rel)
    assert not missing, f"docs/architecture.md's module table has no row for {missing}"
