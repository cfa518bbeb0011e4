"""The key table of docs/configuration.md, generated from :data:`KEYS`, and the command that
prints it: ``python -m gearmgr.config --markdown`` (a test keeps the docs in step)."""

from __future__ import annotations

import argparse
import sys

from gearmgr.config.keys import KEYS


def config_reference_markdown() -> str:
    """The key table of docs/configuration.md, generated from :data:`KEYS`."""
    rows = [
        "| key | default | type | scope | GearmanManager | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for key in KEYS:
        gm_name = f"`{key.gm_name}`" if key.gm_name else "—"
        cells = (f"`{key.name}`", key.default_text(), key.type, key.scope, gm_name, key.help)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m gearmgr.config --markdown``: print the key reference table."""
    parser = argparse.ArgumentParser(prog="python -m gearmgr.config")
    parser.add_argument("--markdown", action="store_true", required=True, help="print the table")
    parser.parse_args(argv)
    sys.stdout.write(config_reference_markdown())
    return 0
