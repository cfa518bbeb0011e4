"""The YAML text of a :class:`~gearmgr.cli.ini_map.Conversion`: a header with the warnings as
``# warning:`` comments, the top-level keys, then ``functions:``; values as users write them
(``1h``, ``256MiB``) and GearmanManager's defaults with an end-of-line comment."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

from gearmgr.cli.ini_map import Conversion, Entry
from gearmgr.config import KEY


def _yaml_value(name: str, value: Any) -> str:
    key = KEY.get(name)
    if key is not None and key.unit is not None and not isinstance(value, str):
        value = key.format(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _lines(entries: dict[str, Entry], indent: str) -> list[str]:
    lines = []
    for name, entry in entries.items():
        line = f"{indent}{name}: {_yaml_value(name, entry.value)}"
        lines.append(f"{line}  # {entry.comment}" if entry.comment else line)
    return lines


def render(conv: Conversion) -> str:
    header = [f"# gearmgr configuration converted from {conv.source} by `gearmgr import-ini`."]
    header.append("# Check it with `gearmgr check -c FILE` before use.")
    for warning in conv.warnings:
        header += textwrap.wrap(warning, 98, initial_indent="# warning: ", subsequent_indent="#   ")
    body = _lines(conv.top, "")
    if conv.functions:
        body += ["", "functions:"]
        for name, entries in conv.functions.items():
            body.append(f"  {_yaml_value('', name)}:")
            body += _lines(entries, "    ")
    return "\n".join([*header, "", *body]) + "\n"
