"""The config package's modules on their own (gearmgr/config/): the value parsers, the key table,
the error wording of a built config, and the names other modules import from gearmgr.config."""

from __future__ import annotations

from pathlib import Path

import pytest

import gearmgr.config
from gearmgr.config import build, keys, loading, settings, values


def test_every_name_other_modules_import_is_still_in_gearmgr_config() -> None:
    for name in (
        "Config",
        "ConfigError",
        "FunctionSettings",
        "load_config",
        "parse_config",
        "config_from_dict",
        "find_config_path",
        "config_reference_markdown",
        "main",
        "KEYS",
        "KEY",
        "FUNCTION_KEYS",
        "GLOBAL_KEYS",
        "ENV_VAR",
        "MAX_FILE_SIZE",
    ):
        assert hasattr(gearmgr.config, name), name
    assert gearmgr.config.Config is settings.Config
    assert gearmgr.config.KEYS is keys.KEYS
    assert gearmgr.config.load_config is loading.load_config


def test_count_parser_refuses_more_processes_than_gearmgr_runs() -> None:
    assert values.count(1000) == 1000
    with pytest.raises(ValueError, match=r"expected at most 1000 \(gearmgr runs at most 1000"):
        values.count(1001)
    with pytest.raises(ValueError, match="expected a whole number >= 0, got true"):
        values.count(True)


def test_servers_parser_writes_every_address_the_one_way_units_does() -> None:
    assert values.servers("a.example, b.example:4731") == ("a.example:4730", "b.example:4731")
    assert values.servers(["[::1]:4730"]) == ("[::1]:4730",)
    with pytest.raises(ValueError, match='at least one "HOST:PORT"'):
        values.servers("")


def test_optional_parser_takes_null_and_otherwise_parses() -> None:
    parse = values.optional(values.path)
    assert parse(None) is None
    assert parse(" run/gearmgr.pid ") == Path("run/gearmgr.pid")
    with pytest.raises(ValueError, match="expected a path without control characters"):
        parse("a\nb")


def test_every_function_key_is_a_field_of_function_settings_and_globals_of_config() -> None:
    fields = set(settings.FunctionSettings.__dataclass_fields__)
    assert set(keys.FUNCTION_KEYS) == fields
    assert set(keys.GLOBAL_KEYS) <= set(settings.Config.__dataclass_fields__)
    for key in keys.KEYS:
        default = getattr(settings.FunctionSettings(), key.name, None)
        if key.scope == "function":
            assert default == key.default, key.name
        else:
            assert getattr(settings.Config(), key.name) == key.default, key.name


def test_an_unknown_key_is_reported_on_its_own_line_under_its_parent() -> None:
    src = build.Source("etc/gearmgr.yaml", {("functions",): 3, ("functions", "reverse"): 4})
    error = src.unknown(("functions", "reverse"), "max_job", ["max_jobs"])
    assert str(error) == (
        'etc/gearmgr.yaml:4: functions.reverse: unknown key "max_job" (did you mean "max_jobs"?)'
    )
    nested = build.Source("f.yaml", {("functions", "reverse", "max_job"): 5})
    assert nested.unknown(("functions", "reverse"), "max_job", []).line == 5


def test_a_value_error_is_reported_at_the_nearest_line_known() -> None:
    src = build.Source("etc/gearmgr.yaml", {("functions",): 7})
    error = src.error(("functions", "reverse", "timeout"), "expected a duration")
    assert str(error) == "etc/gearmgr.yaml:7: functions.reverse.timeout: expected a duration"
