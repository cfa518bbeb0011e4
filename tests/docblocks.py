"""The fenced code blocks of the docs, and how tests/test_docs_examples.py treats each one.

A block is treated by its language (the fence's info string), unless an HTML comment right
above the fence says otherwise (docs/architecture.md, "Tests"):

    <!-- doctest: skip: REASON -->       not run; the reason is required
    <!-- doctest: same-as PATH -->       the block is the file PATH of the repository, verbatim
    <!-- doctest: same-as PATH without its comments -->   the same, with its # lines left out
    <!-- doctest: output -->             the output of the block run just before it
    <!-- doctest: output: any order -->  the same, its lines in any order
    <!-- doctest: pytest -->             a test file, written where its first line says, for pytest
    <!-- doctest: serve FUNCTION -->     a worker: it must register FUNCTION, then exit 0 on SIGINT
    <!-- doctest: setup NAME -->         run after the test's set-up NAME (SETUPS in the test)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Languages whose blocks run (or load) unless marked: python, console, sh, yaml, json, php, perl.
# The others (text: logs and output; ini, covered by test_import_ini; promql; none) are shown only.
RUNNABLE = {"python", "console", "sh", "yaml", "json", "php", "perl"}
DIRECTIVES = {"skip", "same-as", "output", "pytest", "serve", "setup"}

FENCE = re.compile(r"^( *)```(\S*)\s*$")
DIRECTIVE = re.compile(r"^\s*<!-- doctest: ([a-z-]+)(?::? (.*?))? -->\s*$")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} ({self.lang or 'no language'})"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown page, dedented, with the directives above each."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = len(match.group(1)), match.group(2)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][indent:])
            j += 1
        directives: dict[str, str] = {}
        k = i - 1
        while k >= 0 and lines[k].strip().startswith("<!--"):
            d = DIRECTIVE.match(lines[k])
            if d:
                directives[d.group(1)] = (d.group(2) or "").strip()
            k -= 1
        found.append(Block(path.name, i + 1, lang, "\n".join(body) + "\n", directives))
        i = j + 1
    return found


def console_steps(text: str) -> list[tuple[str, str]]:
    """``$ command`` lines of a console block, each with the output shown below it."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return [(command, "\n".join(out)) for command, out in steps]


def strip_comments(code: str) -> list[str]:
    """Lines of Python code without trailing comments and blank lines (for comparing code)."""
    out = []
    for line in code.splitlines():
        line = re.sub(r"\s+#.*$", "", line).rstrip()
        if line and not line.lstrip().startswith("#"):
            out.append(line)
    return out


# What changes from run to run in gearmgr's output, masked on both sides before comparing.
MASKS = [
    (re.compile(r"\bH:[\w.-]+:\d+\b"), "H:HOST:N"),
    (re.compile(r"gearmgr\[\d+\]"), "gearmgr[PID]"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"), "TIME"),
    (re.compile(r"^supervisor \d+, up \d+s,", re.M), "supervisor PID, up Ns,"),
    # a row of the process table: PID, STATE, JOBS (the split among processes varies), RSS,
    # USS, AGE
    (
        re.compile(r"^ *\d+  (idle|busy|stopping) +\d+ +[\d.]+MiB +(?:[\d.]+MiB|-) +\d+s  ", re.M),
        r"PROC \1 ",
    ),
]


def normalize(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
