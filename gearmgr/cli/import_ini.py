"""``gearmgr import-ini FILE.ini``: a GearmanManager ini file as the equivalent gearmgr YAML.

The ini is read the way PHP's ``parse_ini_file($file, true)`` reads it: ``[GearmanManager]`` holds
the globals, every other section is a function. Which GearmanManager key becomes which gearmgr key
comes from each key's ``gm_name`` in :data:`gearmgr.config.KEYS`; what takes more than a rename is
converted here:

* GearmanManager's hidden defaults, which it cannot switch off (a 3600 s lifetime, a 600 s
  restart splay, a 0.5 s spawn splay, a 60 s shutdown wait), are written out so that the
  migrated supervisor behaves the same; each carries a comment.
* Its process formula (research/gearmanmanager.md §2.5) is evaluated, and ``dedicated_count`` is
  written wherever gearmgr's formula would otherwise start a different number of processes
  (``count`` > 0 without ``dedicated_count``; a per-function ``count``).
* Keys with no equivalent (``prefix``, ``priority``, ``daemon``) and semantic differences
  (``timeout``) become warnings: returned as a list, printed on stderr and as ``# warning:``
  comments at the top of the YAML.

The work is in three modules: :mod:`gearmgr.cli.ini_read` (the ini as PHP reads it),
:mod:`gearmgr.cli.ini_map` (GearmanManager's keys to gearmgr's) and :mod:`gearmgr.cli.ini_write`
(the YAML text); this one is the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gearmgr.cli.ini_map import Conversion, convert_function, convert_globals
from gearmgr.cli.ini_read import GLOBAL_SECTION, IniError, php_bool, php_int, read_ini
from gearmgr.cli.ini_write import render

__all__ = ["IniError", "add_arguments", "ini_to_yaml", "main", "php_bool", "php_int", "read_ini"]


def ini_to_yaml(text: str, source: str = "<ini>") -> tuple[str, list[str]]:
    """The gearmgr YAML equivalent to GearmanManager ini ``text``, and the warnings: what could
    not be carried over or behaves differently. Raises IniError if ``text`` is not an ini file."""
    sections = read_ini(text, source)
    if not sections:
        raise IniError(f"{source}: no sections: expected [{GLOBAL_SECTION}] and function sections")
    conv = Conversion(source)
    globals_ = sections.pop(GLOBAL_SECTION, {})
    for name in [s for s in sections if s.lower() == GLOBAL_SECTION.lower()]:
        conv.warn(
            f"[{name}]: GearmanManager ignores it (section names are case-sensitive); left out"
        )
        del sections[name]
    convert_globals(conv, globals_)
    for name, values in sections.items():
        convert_function(conv, name, values)
    return render(conv), conv.warnings


# --- the CLI command -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``gearmgr import-ini``."""
    parser.add_argument("file", metavar="FILE.ini", help="a GearmanManager ini file")


def main(args: argparse.Namespace) -> int:
    """Print the YAML for ``args.file`` on stdout and the warnings on stderr; 0, or 2 on error."""
    try:
        text = Path(args.file).read_text(encoding="utf-8", errors="replace")
        yaml_text, warnings = ini_to_yaml(text, args.file)
    except OSError as exc:
        print(f"gearmgr import-ini: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except IniError as exc:
        print(f"gearmgr import-ini: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"gearmgr import-ini: warning: {warning}", file=sys.stderr)
    sys.stdout.write(yaml_text)
    return 0
