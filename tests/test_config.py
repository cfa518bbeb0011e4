"""Loading and validating gearmgr.yaml (gearmgr/config/): what users write and what they read."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gearmgr.config import (
    FUNCTION_KEYS,
    GLOBAL_KEYS,
    KEY,
    KEYS,
    Config,
    ConfigError,
    FunctionSettings,
    config_from_dict,
    config_reference_markdown,
    find_config_path,
    load_config,
    main,
    parse_config,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def write(tmp_path: Path, text: str, name: str = "gearmgr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(text: str, path: str = "etc/gearmgr.yaml") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path)
    return str(caught.value)


# --- defaults ----------------------------------------------------------------------------------


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.path == tmp_path / "gearmgr.yaml"
    assert config.servers == ("127.0.0.1:4730",)
    assert config.embedded_server is False
    assert config.worker_dirs == (tmp_path / "workers",)
    assert config.include == config.exclude == ()
    assert config.count == 0
    assert config.spawn_delay == 0.0
    assert config.auto_reload is False
    assert config.control_socket == tmp_path / "gearmgr.sock"
    assert config.pid_file is config.user is config.group is config.log_file is None
    assert config.log_level == "info"
    assert config.metrics is None
    assert config.defaults == FunctionSettings()
    assert config.defaults.graceful_timeout == 30.0
    assert config.defaults.dedicated_count == 1
    assert config.functions == {}


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n", "functions:\n"])
def test_empty_documents_load(text: str) -> None:
    assert parse_config(text).count == 0


def test_declared_defaults_match_the_dataclasses() -> None:
    config, settings = Config(), FunctionSettings()
    for key in KEYS:
        owner = settings if key.scope == "function" else config
        assert getattr(owner, key.name) == key.default, key.name


def test_every_field_is_declared_once() -> None:
    config_fields = {f.name for f in dataclasses.fields(Config)} - {"path", "defaults", "functions"}
    assert set(GLOBAL_KEYS) == config_fields
    assert set(FUNCTION_KEYS) == {f.name for f in dataclasses.fields(FunctionSettings)}
    assert len(KEYS) == len(KEY)


def test_every_key_has_help_and_a_type() -> None:
    for key in KEYS:
        assert key.help and key.type, key.name
        assert "|" not in key.help  # it goes in a Markdown table


# --- every key: valid values -------------------------------------------------------------------

VALID: list[tuple[str, str, Any]] = [
    ("servers", '["gm1:4731", "gm2"]', ("gm1:4731", "gm2:4730")),
    ("servers", '"gm1, gm2:4731"', ("gm1:4730", "gm2:4731")),
    ("servers", "gm1", ("gm1:4730",)),
    ("servers", '["[::1]:4731", "::1"]', ("[::1]:4731", "[::1]:4730")),
    ("embedded_server", "false", False),
    ("include", "[reverse, resize]", ("reverse", "resize")),
    ("include", '"reverse, resize"', ("reverse", "resize")),
    ("include", "null", ()),
    ("exclude", "[experimental]", ("experimental",)),
    ("count", "10", 10),
    ("count", "0", 0),
    ("spawn_delay", "250ms", 0.25),
    ("spawn_delay", "2", 2.0),
    ("auto_reload", "true", True),
    ("auto_reload", "yes", True),
    ("user", "gearman", "gearman"),
    ("user", "1000", "1000"),
    ("group", "nogroup", "nogroup"),
    ("log_file", "syslog", "syslog"),
    ("log_file", "/var/log/gearmgr.log", "/var/log/gearmgr.log"),
    ("log_level", "debug", "debug"),
    ("log_level", "WARNING", "warning"),
    ("log_level", "error", "error"),
    ("metrics", '"0.0.0.0:9464"', "0.0.0.0:9464"),
    ("metrics", "null", None),
    ("pid_file", "/run/gearmgr.pid", Path("/run/gearmgr.pid")),
    ("control_socket", "/run/gearmgr.sock", Path("/run/gearmgr.sock")),
    ("worker_dirs", "[/srv/a, /srv/b]", (Path("/srv/a"), Path("/srv/b"))),
    ("worker_dirs", "/srv/a,b", (Path("/srv/a,b"),)),
    ("failed_jobs", "/var/lib/gearmgr/failed.db", Path("/var/lib/gearmgr/failed.db")),
    ("failed_jobs", "none", None),
    ("failed_jobs", "null", None),
    ("failed_jobs_keep", "7d", 7 * 86400.0),
    ("failed_jobs_keep", "1d12h", 36 * 3600.0),
    ("failed_jobs_max", "500", 500),
]

VALID_FUNCTION: list[tuple[str, str, Any]] = [
    ("dedicated_count", "3", 3),
    ("dedicated_count", "0", 0),
    ("dedicated_only", "true", True),
    ("max_processes", "8", 8),
    ("max_processes", "0", 0),
    ("backlog_per_process", "5", 5),
    ("scale_down_delay", "2s", 2.0),
    ("concurrency", "64", 64),
    ("concurrency", "1", 1),
    ("max_jobs", "1000", 1000),
    ("max_lifetime", "1h", 3600.0),
    ("max_lifetime", "90", 90.0),
    ("lifetime_jitter", "5m", 300.0),
    ("max_memory", "256MiB", 268435456),
    ("max_memory", "1000000", 1000000),
    ("timeout", "250ms", 0.25),
    ("timeout", "1h30m", 5400.0),
    ("graceful_timeout", "2m", 120.0),
    ("poison_after", "5", 5),
    ("poison_after", "0", 0),
]


@pytest.mark.parametrize(("key", "text", "value"), VALID)
def test_global_key_accepts(key: str, text: str, value: Any) -> None:
    assert getattr(parse_config(f"{key}: {text}\n"), key) == value


@pytest.mark.parametrize(("key", "text", "value"), VALID_FUNCTION)
def test_function_key_accepts_at_the_top_level(key: str, text: str, value: Any) -> None:
    config = parse_config(f"{key}: {text}\n")
    assert getattr(config.defaults, key) == value
    assert getattr(config.function("anything"), key) == value


@pytest.mark.parametrize(("key", "text", "value"), VALID_FUNCTION)
def test_function_key_accepts_per_function(key: str, text: str, value: Any) -> None:
    config = parse_config(f"dedicated_count: 2\nfunctions:\n  reverse:\n    {key}: {text}\n")
    assert getattr(config.function("reverse"), key) == value


def test_every_key_is_tested() -> None:
    assert {k for k, _, _ in VALID} | {"embedded_server"} == set(GLOBAL_KEYS)
    assert {k for k, _, _ in VALID_FUNCTION} == set(FUNCTION_KEYS)
    assert {k for k, _, _ in INVALID} == set(KEY)


# --- every key: invalid values -----------------------------------------------------------------

INVALID: list[tuple[str, str, str]] = [
    ("servers", "[]", 'expected at least one "HOST:PORT", got []'),
    ("servers", '"gm1:http"', 'expected "HOST:PORT", got "gm1:http"'),
    ("servers", "4730", 'expected a list of "HOST:PORT", got 4730'),
    ("servers", "[gm1, 5]", 'expected a list of "HOST:PORT", got ["gm1", 5]'),
    ("embedded_server", "1", "expected true or false, got 1"),
    ("worker_dirs", "[]", "expected a list of folders, got []"),
    ("worker_dirs", "null", "expected a list of folders, got null"),
    ("include", "5", "expected a list of function names, got 5"),
    ("exclude", '[""]', 'expected a list of function names, got [""]'),
    ("count", "-1", "expected a whole number >= 0, got -1"),
    ("count", "true", "expected a whole number >= 0, got true"),
    ("count", "2.5", "expected a whole number >= 0, got 2.5"),
    ("count", '"3"', 'expected a whole number >= 0, got "3"'),
    ("dedicated_count", "-2", "expected a whole number >= 0, got -2"),
    ("dedicated_only", '"yes"', 'expected true or false, got "yes"'),
    ("max_processes", "-1", "expected a whole number >= 0, got -1"),
    ("backlog_per_process", "0", "expected a whole number >= 1, got 0"),
    ("scale_down_delay", "soon", 'expected a duration like "30s" or "250ms", got "soon"'),
    ("concurrency", "0", "expected a whole number >= 1, got 0"),
    ("concurrency", "20000", "expected at most 10000, got 20000"),
    ("max_jobs", "null", "expected a whole number >= 0, got null"),
    ("max_lifetime", "forever", 'expected a duration like "30s" or "250ms", got "forever"'),
    ("lifetime_jitter", "-5", 'expected a duration like "30s" or "250ms", got -5'),
    ("max_memory", "lots", 'expected a size like "256MiB", got "lots"'),
    ("max_memory", "256MB", 'expected a size like "256MiB", got "256MB"'),
    ("timeout", "soon", 'expected a duration like "30s" or "250ms", got "soon"'),
    ("graceful_timeout", "[30]", 'expected a duration like "30s" or "250ms", got [30]'),
    ("spawn_delay", "1w", 'expected a duration like "30s" or "250ms", got "1w"'),
    ("auto_reload", "1", "expected true or false, got 1"),
    ("control_socket", "null", "expected a path, got null"),
    ("pid_file", '""', 'expected a path, got ""'),
    ("user", "true", "expected a name, got true"),
    ("group", "[a]", 'expected a name, got ["a"]'),
    ("log_file", "5", "expected a path, got 5"),
    ("log_level", "verbose", 'expected one of "debug", "info", "warning", "error", got "verbose"'),
    ("metrics", "9464", 'expected "HOST:PORT", got 9464'),
    ("metrics", '"localhost"', 'expected "HOST:PORT", got "localhost"'),
    ("failed_jobs", "5", "expected a path, got 5"),
    ("failed_jobs_keep", "30d", 'expected a duration of at most 576h (24 days), got "30d"'),
    ("failed_jobs_max", "0", "expected a whole number >= 1, got 0"),
    ("poison_after", "-1", "expected a whole number >= 0, got -1"),
]


@pytest.mark.parametrize(("key", "text", "problem"), INVALID)
def test_bad_value_names_file_line_key_expected_and_given(
    key: str, text: str, problem: str
) -> None:
    message = error_of(f"# gearmgr\n\n{key}: {text}\n")
    assert message == f"etc/gearmgr.yaml:3: {key}: {problem}"


@pytest.mark.parametrize(("key", "text", "problem"), [i for i in INVALID if i[0] in FUNCTION_KEYS])
def test_bad_value_per_function_names_the_key_path(key: str, text: str, problem: str) -> None:
    message = error_of(f"functions:\n  reverse:\n    {key}: {text}\n")
    assert message == f"etc/gearmgr.yaml:3: functions.reverse.{key}: {problem}"


def test_the_example_of_the_style_guide() -> None:
    message = error_of("\n" * 11 + "functions: {reverse: {max_memory: lots}}\n")
    assert message == (
        "etc/gearmgr.yaml:12: functions.reverse.max_memory:"
        ' expected a size like "256MiB", got "lots"'
    )


# --- per-function overrides --------------------------------------------------------------------


def test_function_overrides_only_what_it_sets() -> None:
    config = parse_config(
        "max_jobs: 100\ntimeout: 30s\nfunctions:\n  resize:\n    max_jobs: 5\n  reverse:\n"
    )
    assert config.function("resize") == FunctionSettings(max_jobs=5, timeout=30.0)
    assert config.function("reverse") == FunctionSettings(max_jobs=100, timeout=30)
    assert config.function("reverse") == config.defaults
    assert config.function("not_in_the_file") == config.defaults
    assert list(config.functions) == ["resize", "reverse"]


def test_top_level_defaults_apply_even_when_written_after_functions() -> None:
    config = parse_config("functions:\n  resize: {max_jobs: 5}\nmax_memory: 1GiB\n")
    assert config.function("resize").max_memory == 1024**3


def test_global_only_key_under_a_function_is_an_error() -> None:
    message = error_of("functions:\n  reverse:\n    dedicated_count: 2\n    count: 3\n")
    assert message == (
        "etc/gearmgr.yaml:4: functions.reverse.count: count is global-only: set it at the top"
        " level, not per function"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "functions: [reverse]\n",
            ':1: functions: expected a mapping of function names to settings, got ["reverse"]',
        ),
        (
            "functions:\n  reverse: 5\n",
            ":2: functions.reverse: expected a mapping of settings (or null), got 5",
        ),
        (
            "functions:\n  5: {}\n",
            ":2: functions: expected a key name (text), got 5, which YAML reads as a number"
            " (quote it)",
        ),
    ],
)
def test_malformed_functions(text: str, message: str) -> None:
    assert error_of(text) == "etc/gearmgr.yaml" + message


# --- unknown keys, duplicates, YAML errors ------------------------------------------------------


def test_unknown_key_names_its_line_and_the_closest_key() -> None:
    message = error_of("count: 2\nservers: [gm1]\nmax_job: 3\n")
    assert message == 'etc/gearmgr.yaml:3: unknown key "max_job" (did you mean "max_jobs"?)'


def test_unknown_key_without_a_close_match() -> None:
    assert error_of("colour: blue\n") == 'etc/gearmgr.yaml:1: unknown key "colour"'


def test_unknown_key_under_a_function() -> None:
    message = error_of("functions:\n  reverse:\n    max_jobs: 1\n    timout: 5s\n")
    assert message == (
        'etc/gearmgr.yaml:4: functions.reverse: unknown key "timout" (did you mean "timeout"?)'
    )


def test_key_given_twice() -> None:
    assert error_of("count: 2\nmax_jobs: 1\ncount: 3\n") == (
        "etc/gearmgr.yaml:3: count is given twice (first on line 1)"
    )


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("count: 2\nservers: [gm1\nmax_jobs: 3\n", "3:9", "expected ',' or ']'"),
        ("count: 2\n  max_jobs: 3\n", "2:11", "mapping values are not allowed in this context"),
        ("count: 2\n\tmax_jobs: 3\n", "2:1", "found a tab character"),
        ("a: 1\n---\nb: 2\n", "2:1", "expected a single document"),
    ],
)
def test_yaml_syntax_error_gives_line_and_column(text: str, where: str, problem: str) -> None:
    message = error_of(text)
    assert message.startswith(f"etc/gearmgr.yaml:{where}: invalid YAML: ")
    assert problem in message


def test_python_tags_are_refused() -> None:
    message = error_of("!!python/name:os.system\n")
    assert "invalid YAML: could not determine a constructor" in message


@pytest.mark.parametrize(
    ("text", "given"), [("- count\n", '["count"]'), ("5\n", "5"), ("hello\n", '"hello"')]
)
def test_top_level_must_be_a_mapping(text: str, given: str) -> None:
    assert error_of(text) == (
        f"etc/gearmgr.yaml:1: expected a mapping of keys at the top level, got {given}"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    problem = "cannot read the config: No such file or directory"
    assert str(caught.value) == f"{tmp_path}/nope.yaml: {problem}"
    assert caught.value.file == f"{tmp_path}/nope.yaml"


def test_a_folder_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": cannot read the config: Is a directory$"):
        load_config(tmp_path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "gearmgr.yaml"
    path.write_bytes(b"count: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"cannot read the config: not UTF-8 text$"):
        load_config(path)


def test_error_parts_are_attributes() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("count: 1\nfunctions:\n  r:\n    max_memory: lots\n", "g.yaml")
    error = caught.value
    assert (error.file, error.line, error.column) == ("g.yaml", 4, None)
    assert error.key == "functions.r.max_memory"
    assert error.problem == 'expected a size like "256MiB", got "lots"'


def test_text_without_a_path_is_named_config() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("count: x\n")
    assert str(caught.value) == '<config>:1: count: expected a whole number >= 0, got "x"'


# --- paths ---------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "log").mkdir(parents=True)
    path = write(
        etc,
        "worker_dirs: [../workers, more, /abs/workers]\ncontrol_socket: run/g.sock\n"
        "pid_file: g.pid\nlog_file: log/g.log\n",
    )
    config = load_config(path)
    assert config.worker_dirs == (tmp_path / "workers", etc / "more", Path("/abs/workers"))
    assert config.control_socket == etc / "run" / "g.sock"
    assert config.pid_file == etc / "g.pid"
    assert config.log_file == str(etc / "log" / "g.log")


def test_relative_config_path_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "log_file: g.log\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("gearmgr.yaml")
    assert config.path == tmp_path / "gearmgr.yaml"
    assert config.log_file == str(tmp_path / "g.log")
    assert config.worker_dirs == (tmp_path / "workers",)


def test_without_a_path_paths_resolve_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config("pid_file: g.pid\n")
    assert config.path is None
    assert config.pid_file == tmp_path / "g.pid"
    assert config.control_socket == tmp_path / "gearmgr.sock"


def test_syslog_is_not_a_path(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "log_file: syslog\n")).log_file == "syslog"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_config("pid_file: ~/g.pid\n", "/etc/g.yaml").pid_file == tmp_path / "g.pid"


# --- cross-key checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first", ["127.0.0.1", "127.0.0.1:4731", "localhost:4730", "[::1]:4730", "127.3.2.1"]
)
def test_embedded_server_on_loopback(first: str) -> None:
    config = parse_config(f'embedded_server: true\nservers: ["{first}", "10.0.0.5"]\n')
    assert config.embedded_server is True


def test_embedded_server_with_the_default_servers() -> None:
    assert parse_config("embedded_server: true\n").servers == ("127.0.0.1:4730",)


def test_embedded_server_refuses_a_network_address() -> None:
    message = error_of('count: 1\nservers: ["10.0.0.5", "127.0.0.1"]\nembedded_server: true\n')
    assert message == (
        "etc/gearmgr.yaml:3: embedded_server: expected the first servers entry to be a loopback"
        ' address (127.0.0.1, localhost or ::1) for the embedded gearmand, got "10.0.0.5:4730"'
    )


def test_dedicated_only_needs_a_process_per_function() -> None:
    message = error_of("dedicated_count: 0\nfunctions:\n  report:\n    dedicated_only: true\n")
    assert message == (
        "etc/gearmgr.yaml:4: functions.report.dedicated_only: expected dedicated_count >= 1 with"
        " dedicated_only: true (they are the function's only processes), got dedicated_count: 0"
    )


def test_dedicated_only_from_the_top_level_blames_the_function_count() -> None:
    message = error_of("dedicated_only: true\nfunctions:\n  report:\n    dedicated_count: 0\n")
    assert message.startswith("etc/gearmgr.yaml:4: functions.report.dedicated_count: expected")


def test_dedicated_only_at_the_top_level() -> None:
    message = error_of("dedicated_only: true\ndedicated_count: 0\n")
    assert message.startswith("etc/gearmgr.yaml:1: dedicated_only: expected dedicated_count >= 1")
    config = parse_config("dedicated_only: true\nfunctions: {a: {dedicated_count: 2}}\n")
    assert config.function("a") == FunctionSettings(dedicated_count=2, dedicated_only=True)


def test_dedicated_only_with_its_own_count_is_fine() -> None:
    config = parse_config(
        "dedicated_count: 0\nfunctions:\n  report: {dedicated_only: true, dedicated_count: 2}\n"
    )
    assert config.function("report") == FunctionSettings(dedicated_count=2, dedicated_only=True)


# --- the dict entry point, replace --------------------------------------------------------------


def test_config_from_dict() -> None:
    config = config_from_dict({"count": 2, "functions": {"r": {"timeout": "1s"}}}, "/etc/g.yaml")
    assert config.count == 2
    assert config.function("r").timeout == 1.0
    assert config.worker_dirs == (Path("/etc/workers"),)
    with pytest.raises(ConfigError, match=r"^/etc/g.yaml: count: expected a whole number"):
        config_from_dict({"count": "x"}, "/etc/g.yaml")


def test_replace() -> None:
    config = parse_config("count: 2\n")
    assert config.replace(count=3).count == 3
    assert config.count == 2


def test_the_example_config_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "etc" / "gearmgr.yaml"
    if example.exists():
        load_config(example)


# --- the reference table in the docs ------------------------------------------------------------


def test_markdown_table_has_a_row_per_key() -> None:
    table = config_reference_markdown()
    rows = table.splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [key.name for key in KEYS]
    assert "| `graceful_timeout` | `30s` | duration | function |" in table
    assert "| `max_memory` | `0` | size | function | — |" in table
    assert "| `log_file` | none (stderr) |" in table


def test_docs_table_is_the_generated_one() -> None:
    text = DOCS.read_text()
    begin, end = "<!-- keys:begin -->\n", "<!-- keys:end -->"
    assert begin in text and end in text, "docs/configuration.md lost its keys markers"
    documented = text.split(begin, 1)[1].split(end, 1)[0]
    assert documented == config_reference_markdown(), (
        "docs/configuration.md is out of date: paste `python -m gearmgr.config --markdown`"
        " between the keys markers"
    )


def test_docs_full_example_loads() -> None:
    block = _code_block(DOCS.read_text(), "<!-- example:full -->")
    config = parse_config(block, "/etc/gearmgr/gearmgr.yaml")
    assert config.worker_dirs == (Path("/etc/gearmgr/workers"),)
    assert config.function("send_invoice").dedicated_only is True


# Each error shown in docs/configuration.md, and a config that produces it.
DOC_ERRORS = [
    "\n" * 11 + "functions: {reverse: {max_memory: lots}}\n",
    "count: 1\nservers: [gm1]\nmax_job: 3\n",
    "\n" * 5 + "functions:\n  reverse:\n    timout: 5s\n",
    "\n" * 6 + "functions:\n  reverse:\n    count: 3\n",
    "max_jobs: 5\nservers: [gm1]\n\ncount: 2: 3\n",
    "\ncount: 1\n\n\ncount: 2\n",
    "\ntimeout: soon\n",
    'servers: "gm1:http"\n',
    "\n" * 6 + "max_jobs: -1\n",
    "\n" * 5 + "auto_reload: 1\n",
    'count: 1\nservers: ["10.0.0.5"]\nembedded_server: true\n',
    "dedicated_count: 0\n" + "\n" * 10 + "functions:\n  report:\n    dedicated_only: true\n",
]


def test_docs_error_examples_are_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _code_block(DOCS.read_text(), "## Errors").splitlines()
    produced = [error_of(text) for text in DOC_ERRORS]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("etc/gearmgr.yaml")
    assert shown == [*produced, str(caught.value)]


def _code_block(text: str, marker: str) -> str:
    after = text.split(marker, 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == config_reference_markdown()


def test_main_without_markdown_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


def test_python_m_gearmgr_config_markdown() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gearmgr.config", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == config_reference_markdown()


def test_find_config_path() -> None:
    assert find_config_path("a.yaml", {"GEARMGR_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert find_config_path(None, {"GEARMGR_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert find_config_path(None, {}) == Path("gearmgr.yaml")
