"""`gearmgr import-ini`: GearmanManager ini files as gearmgr YAML (gearmgr/cli/import_ini.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearmgr.cli.import_ini import IniError, add_arguments, ini_to_yaml, main, php_bool, php_int
from gearmgr.config import Config, parse_config

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# Modelled on GearmanManager's etc/config-advanced.ini, with servers, paths and logging filled in.
ADVANCED_INI = """\
; GearmanManager config, modelled on its etc/config-advanced.ini
[GearmanManager]
worker_dir=/srv/gearman/workers,/srv/gearman/worker-classes
include=*
count=10
dedicated_count=1
max_worker_lifetime=3600
auto_update=1
timeout = 300
graceful_shutdown_wait_time = 60
host = 10.0.0.5,10.0.0.6:4731
log_file = /var/log/gearman-manager.log
pid_file = /var/run/gearman/manager.pid
user = gearman
verbose = vv
prefix = GM_

[reverse_string]
count = 3

[Sum]
dedicated_count=5
dedicated_only=1

[fetch_url]
count=15
timeout = 30
priority = 2
"""
# The worker files of GearmanManager's examples.
EXAMPLE_FUNCTIONS = ["reverse_string", "Avg", "Sum", "fetch_url"]


def convert(text: str) -> tuple[Config, list[str]]:
    """The ini as gearmgr loads it once converted, and the warnings."""
    yaml_text, warnings = ini_to_yaml(text, "gm.ini")
    return parse_config(yaml_text, "/etc/gearmgr/gearmgr.yaml"), warnings


def able(config: Config, function: str) -> int:
    """Processes able to do ``function`` under gearmgr's plan (SPEC.md, "The process plan")."""
    settings = config.function(function)
    return settings.dedicated_count + (0 if settings.dedicated_only else config.count)


def processes(config: Config, functions: list[str]) -> int:
    return config.count + sum(config.function(name).dedicated_count for name in functions)


def warning_about(warnings: list[str], start: str) -> str:
    matches = [w for w in warnings if w.startswith(start)]
    assert len(matches) == 1, f"no single warning starting {start!r} in {warnings}"
    return matches[0]


# --- GearmanManager's etc/config-advanced.ini ----------------------------------------------------


def test_advanced_example_starts_the_same_22_processes() -> None:
    config, _ = convert(ADVANCED_INI)
    assert processes(config, EXAMPLE_FUNCTIONS) == 22
    assert [able(config, f) for f in EXAMPLE_FUNCTIONS] == [11, 11, 5, 15]
    assert config.function("Sum").dedicated_only is True


def test_advanced_example_globals() -> None:
    config, _ = convert(ADVANCED_INI)
    assert config.servers == ("10.0.0.5:4730", "10.0.0.6:4731")
    assert config.worker_dirs == (Path("/srv/gearman/workers"), Path("/srv/gearman/worker-classes"))
    assert config.include == ()
    assert config.count == 10
    assert config.auto_reload is True
    assert config.pid_file == Path("/var/run/gearman/manager.pid")
    assert config.user == "gearman"
    assert config.log_file == "/var/log/gearman-manager.log"
    assert config.log_level == "debug"
    assert config.spawn_delay == 0.5
    defaults = config.defaults
    assert (defaults.max_lifetime, defaults.lifetime_jitter) == (3600, 600)
    assert (defaults.timeout, defaults.graceful_timeout) == (300, 60)
    assert config.function("fetch_url").timeout == 30


def test_advanced_example_warnings() -> None:
    _, warnings = convert(ADVANCED_INI)
    assert "not supported" in warning_about(warnings, "[GearmanManager] prefix = GM_:")
    timeout = warning_about(warnings, "[GearmanManager] timeout = 300:")
    assert (
        "CAN_DO_TIMEOUT" in timeout
        and "re-queued" in timeout
        and "reports the job failed" in timeout
    )
    assert "wrote timeout: 5m" in timeout
    assert "see the first timeout warning" in warning_about(warnings, "[fetch_url] timeout = 30:")
    assert "not supported" in warning_about(warnings, "[fetch_url] priority = 2:")
    fetch = warning_about(warnings, "[fetch_url] count = 15:")
    assert '"at least 15 processes able to do fetch_url"' in fetch
    assert "wrote dedicated_count: 5 to start the same 15" in fetch
    reverse = warning_about(warnings, "[reverse_string] count = 3:")
    assert "already give the same 11; left out" in reverse
    assert len(warnings) == 6


def test_the_yaml_in_the_docs_is_what_import_ini_prints() -> None:
    text = DOCS.read_text()
    ini = _code_block(text, "<!-- example:ini -->")
    assert ini == ADVANCED_INI
    assert (
        _code_block(text, "<!-- example:ini-yaml -->") == ini_to_yaml(ini, "gearman-manager.ini")[0]
    )


def _code_block(text: str, marker: str) -> str:
    return text.split(marker, 1)[1].split("```", 2)[1].split("\n", 1)[1]


# --- the process formula -------------------------------------------------------------------------


def test_count_without_dedicated_count_writes_dedicated_count_zero() -> None:
    yaml_text, _ = ini_to_yaml("[GearmanManager]\ncount = 3\n[reverse_string]\ncount = 3\n")
    assert "dedicated_count: 0  # GearmanManager starts no dedicated processes" in yaml_text
    config = parse_config(yaml_text)
    assert processes(config, ["reverse_string", "other"]) == 3


def test_no_count_means_one_process_per_function() -> None:
    config, _ = convert("[GearmanManager]\nworker_dir = /w\n")
    assert config.count == 0
    assert config.defaults.dedicated_count == 1


def test_function_count_without_shared_processes() -> None:
    config, warnings = convert("[GearmanManager]\n[resize]\ncount = 4\n")
    assert config.function("resize").dedicated_count == 4
    assert "counting the 0 count processes" in warning_about(warnings, "[resize] count = 4:")


def test_function_dedicated_count_goes_under_functions() -> None:
    config, warnings = convert("[GearmanManager]\ncount = 2\n[resize]\ndedicated_count = 3\n")
    assert config.function("resize").dedicated_count == 3
    assert config.defaults.dedicated_count == 0
    assert not [w for w in warnings if w.startswith("[resize]")]


def test_dedicated_only_without_dedicated_count() -> None:
    config, warnings = convert("[GearmanManager]\n[report]\ndedicated_only = yes\ncount = 3\n")
    assert config.function("report").dedicated_only is True
    assert config.function("report").dedicated_count == 1
    assert "GearmanManager exits at start-up" in warning_about(warnings, "[report] dedicated_only")
    assert "ignored for a dedicated_only" in warning_about(warnings, "[report] count = 3:")


def _gm_processes_able(ini: dict[str, dict[str, int]], function: str) -> int:
    """GearmanManager's count for ``function``: its load_workers(), transcribed from the PHP."""
    glob, section = ini.get("GearmanManager", {}), ini.get(function, {})
    do_all = glob.get("count", 0) if glob.get("count", 0) > 0 else 0
    if section.get("dedicated_only"):
        return section["dedicated_count"]
    min_count = max(do_all, 1)
    if section.get("count"):
        min_count = max(section["count"], do_all)
    if section.get("dedicated_count"):
        ded_count = do_all + section["dedicated_count"]
    elif glob.get("dedicated_count"):
        ded_count = do_all + glob["dedicated_count"]
    else:
        ded_count = min_count
    return max(min_count, ded_count)


SMALL = st.integers(min_value=0, max_value=6)
SECTION = st.fixed_dictionaries(
    {}, optional={"count": SMALL, "dedicated_count": SMALL, "dedicated_only": st.integers(0, 1)}
)


@given(
    st.fixed_dictionaries({}, optional={"count": SMALL, "dedicated_count": SMALL}),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), SECTION, max_size=3),
)
def test_every_function_has_as_many_processes_as_in_gearmanmanager(
    globals_: dict[str, int], sections: dict[str, dict[str, int]]
) -> None:
    sections = {
        name: section
        for name, section in sections.items()
        if not (section.get("dedicated_only") and not section.get("dedicated_count"))
    }  # GearmanManager refuses to start on those (covered above)
    ini = {"GearmanManager": globals_, **sections}
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items())
        for name, values in ini.items()
    )
    config, _ = convert(text)
    functions = ["a", "b", "c", "no_section"]
    for function in functions:
        assert able(config, function) == _gm_processes_able(ini, function), (text, function)
    do_all = max(globals_.get("count", 0), 0)
    gm_total = do_all + sum(
        _gm_processes_able(ini, f) - (0 if ini.get(f, {}).get("dedicated_only") else do_all)
        for f in functions
    )
    assert processes(config, functions) == gm_total


# --- GearmanManager's hidden defaults ----------------------------------------------------------


def test_gearmanmanager_defaults_are_written_out() -> None:
    yaml_text, warnings = ini_to_yaml("[GearmanManager]\ncount = 1\n")
    config = parse_config(yaml_text)
    assert config.defaults.max_lifetime == 3600
    assert config.defaults.lifetime_jitter == 600
    assert config.defaults.graceful_timeout == 60
    assert config.spawn_delay == 0.5
    assert config.log_level == "info"
    assert "max_lifetime: 1h  # GearmanManager's default" in yaml_text
    assert "log_level: info  # GearmanManager without verbose logged nothing" in yaml_text
    lifetime = warning_about(warnings, "[GearmanManager] max_worker_lifetime (not set):")
    assert "cannot switch that off" in lifetime and "0 switches it off in gearmgr" in lifetime


@pytest.mark.parametrize("value", ["0", "-5", ""])
def test_lifetime_cannot_be_switched_off_in_gearmanmanager(value: str) -> None:
    config, warnings = convert(f"[GearmanManager]\nmax_worker_lifetime = {value}\n")
    assert config.defaults.max_lifetime == 3600
    warning_about(warnings, f"[GearmanManager] max_worker_lifetime = {value}:")


def test_set_values_are_kept() -> None:
    config, warnings = convert(
        "[GearmanManager]\nmax_worker_lifetime = 600\nworker_restart_splay = 30\n"
        "worker_initial_spawn_splay = 250000\ngraceful_shutdown_wait_time = 5\n"
        "max_runs_per_worker = 100\n"
    )
    defaults = config.defaults
    assert (defaults.max_lifetime, defaults.lifetime_jitter, defaults.graceful_timeout) == (
        600,
        30,
        5,
    )
    assert config.spawn_delay == 0.25  # microseconds in GearmanManager
    assert defaults.max_jobs == 100
    assert not [w for w in warnings if "max_worker_lifetime" in w]


@pytest.mark.parametrize(
    ("verbose", "level"),
    [("0", "info"), ("1", "info"), ("2", "info"), ("3", "debug"), ("5", "debug"), ("v", "info"),
     ("vv", "debug"), ("vvvv", "debug"), ("", "info"), ("none", "info"), ("true", "info")],
)  # fmt: skip
def test_verbose_becomes_log_level(verbose: str, level: str) -> None:
    config, _ = convert(f"[GearmanManager]\nverbose = {verbose}\n")
    assert config.log_level == level


# --- keys without an equivalent, lists, paths --------------------------------------------------


def test_daemon_and_unknown_keys_warn() -> None:
    _, warnings = convert("[GearmanManager]\ndaemon = 1\nfrobnicate = 2\ndedicated_only = 1\n")
    assert "systemd" in warning_about(warnings, "[GearmanManager] daemon = 1:")
    assert "left out" in warning_about(warnings, "[GearmanManager] frobnicate = 2:")
    assert "function section" in warning_about(warnings, "[GearmanManager] dedicated_only = 1:")


def test_keys_gearmanmanager_ignores_per_function() -> None:
    config, warnings = convert("[GearmanManager]\n[resize]\nmax_runs_per_worker = 5\n")
    message = warning_about(warnings, "[resize] max_runs_per_worker = 5:")
    assert "ignores this in a function section" in message and "max_jobs" in message
    assert config.function("resize").max_jobs == 0


def test_lists_and_stars() -> None:
    config, _ = convert(
        '[GearmanManager]\nhost = "gm1, gm2:4731"\ninclude = a, b\nexclude = c\nworker_dir = /w\n'
    )
    assert config.servers == ("gm1:4730", "gm2:4731")
    assert config.include == ("a", "b")
    assert config.exclude == ("c",)


def test_relative_paths_warn() -> None:
    config, warnings = convert("[GearmanManager]\nworker_dir = ./workers\nlog_file = syslog\n")
    assert config.worker_dirs == (Path("/etc/gearmgr/workers"),)
    assert config.log_file == "syslog"
    assert "YAML file's folder" in warning_about(warnings, "relative paths in worker_dirs:")


def test_a_bad_value_is_left_out_with_a_warning() -> None:
    config, warnings = convert("[GearmanManager]\nhost = gm1:http\n")
    assert config.servers == ("127.0.0.1:4730",)
    message = warning_about(warnings, "[GearmanManager] host = gm1:http:")
    assert message.endswith('expected "HOST:PORT", got "gm1:http"; left out')


def test_lowercase_global_section_is_ignored_like_gearmanmanager_does() -> None:
    config, warnings = convert("[gearmanmanager]\ncount = 5\n")
    assert config.count == 0
    assert "case-sensitive" in warning_about(warnings, "[gearmanmanager]:")


def test_function_names_that_look_like_other_yaml_types() -> None:
    config, _ = convert(
        "[GearmanManager]\n[yes]\ndedicated_count = 2\n[123]\ndedicated_count = 3\n"
    )
    assert config.function("yes").dedicated_count == 2
    assert config.function("123").dedicated_count == 3


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("true", True), ("On", True), ("yes", True), ("2", True), ("", False),
     ("0", False), ("false", False), ("off", False), ("no", False), ("none", False)],
)  # fmt: skip
def test_php_bool(raw: str, value: bool) -> None:
    assert php_bool(raw) is value


@pytest.mark.parametrize(
    ("raw", "value"), [("10", 10), ("10abc", 10), ("abc", 0), ("", 0), ("-3", -3)]
)
def test_php_int(raw: str, value: int) -> None:
    assert php_int(raw) == value


# --- not an ini file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count = 1\n", "gm.ini:1: not a GearmanManager ini file: expected a [section] before"),
        ("[GearmanManager]\n= 5\n", "gm.ini:2: expected KEY = VALUE, got '= 5'"),
        ("; only a comment\n", "gm.ini: no sections"),
    ],
)
def test_not_an_ini_file(text: str, message: str) -> None:
    with pytest.raises(IniError) as caught:
        ini_to_yaml(text, "gm.ini")
    assert str(caught.value).startswith(message)


# --- the command -------------------------------------------------------------------------------


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gearmgr import-ini")
    add_arguments(parser)
    return main(parser.parse_args(argv))


def test_command_prints_yaml_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = tmp_path / "config-advanced.ini"
    ini.write_text(ADVANCED_INI)
    assert run([str(ini)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"# gearmgr configuration converted from {ini} by `gearmgr import-ini`.")
    assert "# warning: [GearmanManager] prefix = GM_: not supported" in out
    assert parse_config(out).count == 10
    lines = err.splitlines()
    assert len(lines) == 6
    assert all(line.startswith("gearmgr import-ini: warning: [") for line in lines)


def test_command_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(tmp_path / "nope.ini")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err == f"gearmgr import-ini: cannot read {tmp_path}/nope.ini: No such file or directory\n"
    )


def test_command_on_a_file_that_is_not_ini(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gm.yaml"
    path.write_text("count: 1\n")
    assert run([str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"gearmgr import-ini: {path}:1: not a GearmanManager ini file")
    assert err.count("\n") == 1
