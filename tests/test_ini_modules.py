"""The modules of `gearmgr import-ini` on their own: reading the ini as PHP does
(gearmgr/cli/ini_read.py), mapping GearmanManager's keys (ini_map.py), writing YAML
(ini_write.py)."""

from __future__ import annotations

import pytest

from gearmgr.cli.ini_map import Conversion, Entry, convert_function, convert_globals
from gearmgr.cli.ini_read import IniError, php_number, read_ini
from gearmgr.cli.ini_write import render
from gearmgr.config import parse_config


def test_read_ini_keeps_case_strips_quotes_and_inline_comments() -> None:
    text = '[GearmanManager]\nHost = "a:1" ; the server\n[reverse]\ncount=2\n'
    assert read_ini(text) == {"GearmanManager": {"Host": "a:1"}, "reverse": {"count": "2"}}


def test_read_ini_names_the_file_and_line_of_a_key_outside_a_section() -> None:
    with pytest.raises(IniError, match=r"^gm\.ini:1: not a GearmanManager ini file"):
        read_ini("count = 2\n", "gm.ini")


def test_php_number_is_a_whole_value_or_nothing() -> None:
    assert php_number(" 250000 ") == 250000.0
    assert php_number("10abc") is None


def test_globals_write_gearmanmanagers_hidden_lifetime_with_a_comment() -> None:
    conv = Conversion("gm.ini")
    convert_globals(conv, {"count": "2"})
    assert conv.top["count"] == Entry(2)
    assert conv.top["max_lifetime"].value == 3600
    assert "max_worker_lifetime not set" in (conv.top["max_lifetime"].comment or "")
    assert conv.top["dedicated_count"].value == 0  # count > 0 and no dedicated_count


def test_a_per_function_count_becomes_the_dedicated_count_that_starts_as_many() -> None:
    conv = Conversion("gm.ini")
    convert_globals(conv, {"count": "1"})
    convert_function(conv, "reverse", {"count": "3"})
    assert conv.functions["reverse"]["dedicated_count"] == Entry(2)  # 1 count + 2 = at least 3
    assert any("[reverse] count = 3" in warning for warning in conv.warnings)


def test_render_writes_units_comments_and_warnings_as_a_loadable_config() -> None:
    conv = Conversion("gm.ini")
    conv.top["max_lifetime"] = Entry(3600, "GearmanManager's default")
    conv.functions["reverse"] = {"timeout": Entry(30)}
    conv.warn("something to check")
    text = render(conv)
    assert "max_lifetime: 1h  # GearmanManager's default\n" in text
    assert "# warning: something to check\n" in text
    assert "functions:\n  reverse:\n    timeout: 30s\n" in text
    assert parse_config(text).function("reverse").timeout == 30.0
