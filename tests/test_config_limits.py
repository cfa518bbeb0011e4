"""Hostile and unlucky config files (issue 9, "Config loading is bounded"), driven as a user would:
each is written to a file and given to ``gearmgr check -c FILE`` (and ``gearmgr run``), which must
exit 2 with one line on stderr naming the file and the key, never a traceback, and quickly. The
same files go through :func:`load_config` in-process, with libyaml and with PyYAML's pure-Python
parser, and Hypothesis throws arbitrary text and bytes at the loader."""

from __future__ import annotations

import grp
import os
import pwd
import select
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gearmgr import yamlread
from gearmgr.config import KEY, MAX_FILE_SIZE, Config, ConfigError, load_config, parse_config
from gearmgr.units import MAX_DURATION
from tests.support import Gearmand, wait_for

# --- hostile files -------------------------------------------------------------------------------


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" under a real key: 10 lines, under 1 KB, 9**9 strings once expanded."""
    lines = ["servers:", '  - &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for n in range(1, levels):
        lines.append(f"  - &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def mapping_bomb(levels: int = 9, width: int = 9) -> str:
    """The same with mappings under ``functions``: walked by the key-line recorder too."""
    keys = [f"k{i}" for i in range(width)]
    lines = ["functions:", "  m0: &m0 {" + ", ".join(f"{k}: 1" for k in keys) + "}"]
    for n in range(1, levels):
        lines.append(f"  m{n}: &m{n} {{" + ", ".join(f"{k}: *m{n - 1}" for k in keys) + "}")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 9, width: int = 9) -> str:
    """Merge keys (``<<``) that each pull in the level below."""
    lines = ["x0: &x0 {" + ", ".join(f"k{i}: 1" for i in range(width)) + "}"]
    for n in range(1, levels):
        items = ", ".join(f"k{i}: *x{n - 1}" for i in range(width))
        lines.append(f"x{n}: &x{n} {{<<: *x{n - 1}, {items}}}")
    return "\n".join(lines) + "\n"


DIGITS = "9" * 5000
LONG_SOCKET = "/tmp/" + "s" * 200 + ".sock"

# (id, config text, what the one line must contain besides the file name)
HOSTILE: list[tuple[str, str, str]] = [
    ("alias bomb", alias_bomb(), "expected at most 50000 values"),
    ("alias bomb of mappings", mapping_bomb(), "expected at most 50000 values"),
    ("merge-key bomb", merge_bomb(), "expected at most 50000 values"),
    ("alias loop", "servers: &s [gm1, *s]\n", "servers.1: the alias *s is inside the value"),
    ("5000-digit count", f"count: {DIGITS}\n", "count: expected an integer of at most 20 digits"),
    (
        "5000-digit per-function value",
        f"functions:\n  reverse:\n    max_jobs: {DIGITS}\n",
        ":3: functions.reverse.max_jobs: expected an integer of at most 20 digits",
    ),
    ("explicit !!int", f'count: !!int "{DIGITS}"\n', "count: expected an integer of at most 20"),
    ("sexagesimal integer", "count: " + ":".join(["59"] * 3000) + "\n", "count: expected an"),
    ("list nested 5000 deep", "include: " + "[" * 5000 + "]" * 5000 + "\n", ":1:"),
    ("mapping nested 5000 deep", "functions: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", ":1:"),
    (
        "block nesting 40 deep",
        "functions:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)),
        "expected at most 20 nested lists or mappings",
    ),
    ("NUL in a path", 'log_file: "/tmp/a\\0b.log"\n', "log_file: expected text without control"),
    ("NUL in a name", 'include: ["rev\\0erse"]\n', "include.0: expected text without control"),
    ("escape in a key", 'functions:\n  "rev\\eerse": {}\n', "functions: expected text without"),
    ("newline in a server", 'servers: ["gm1\\n:4730"]\n', "servers.0: expected text without"),
    ("C1 control character", 'user: "a\\x85b"\n', "user: expected text without control"),
    (
        "number as a key",
        "1: 2\n",
        "expected a key name (text), got 1, which YAML reads as a number",
    ),
    ("boolean as a key", "functions:\n  on: {}\n", "functions: expected a key name (text), got on"),
    ("null as a key", "~: 1\n", "expected a key name (text), got ~, which YAML reads as null"),
    ("list as a key", "? [a, b]\n: 1\n", "expected a key name (text), got a list or mapping"),
    ("alias as a key", "a: &k count\n*k : 1\n", "expected a key name (text), got the alias *k"),
    ("huge timeout", "timeout: 99999999999\n", "timeout: expected a duration of at most 576h"),
    ("huge timeout with a unit", "timeout: 1000000h\n", "timeout: expected a duration of at most"),
    ("timeout of 10**300 s", "timeout: 1.0e+300\n", "timeout: expected a duration of at most"),
    (
        "huge per-function lifetime",
        "functions:\n  reverse:\n    max_lifetime: 600h\n",
        ":3: functions.reverse.max_lifetime: expected a duration of at most 576h (24 days)",
    ),
    ("graceful_timeout", "graceful_timeout: 9999999999999999999\n", "graceful_timeout: expected"),
    ("spawn_delay", "spawn_delay: 1e999s\n", "spawn_delay: expected a duration"),
    ("huge size", "max_memory: 2000TiB\n", "max_memory: expected a size of at most 1024TiB"),
    (
        "huge count",
        "count: 5000\n",
        "count: expected at most 1000 (gearmgr runs at most 1000 processes), got 5000",
    ),
    (
        "huge dedicated_count",
        "functions:\n  reverse:\n    dedicated_count: 100000\n",
        "functions.reverse.dedicated_count: expected at most 1000",
    ),
    ("huge max_jobs", "max_jobs: 10000000000000\n", "max_jobs: expected at most 1000000000"),
    ("port with 5000 digits", f'servers: ["gm1:{DIGITS}"]\n', 'servers: expected "HOST:PORT"'),
    ("port in other digits", 'servers: ["gm1:\u0664\u0667"]\n', 'servers: expected "HOST:PORT"'),
    ("metrics port", 'metrics: "127.0.0.1:99999"\n', 'metrics: expected "HOST:PORT"'),
    (
        "control_socket too long",
        f"control_socket: {LONG_SOCKET}\n",
        "control_socket: expected a path of at most 107 bytes (a unix socket's limit), got 210",
    ),
    (
        "path past PATH_MAX",
        "worker_dirs: [/" + "d" * 5000 + "]\n",
        "worker_dirs: expected a path of at most 4095 bytes, got 5001 bytes",
    ),
    ("bad date", "count: !!timestamp 2001-13-01\n", ':1:8: invalid YAML: cannot read "2001-13-01"'),
    ("bad explicit float", 'count: !!float "x"\n', ':1:8: invalid YAML: cannot read "x" as'),
    ("lone surrogate", 'user: "\\ud800"\n', ":1:"),
    ("two documents", "count: 1\n---\ncount: 2\n", "expected a single document"),
    ("undefined alias", "count: *nowhere\n", "invalid YAML:"),
]

# Files that need the machine looked at: checked by load_config (run, check, reload).
MISSING_DIR = "/nonexistent-gearmgr-folder"
SYSTEM: list[tuple[str, str, str]] = [
    (
        "log_file in a missing folder",
        f"log_file: {MISSING_DIR}/gearmgr.log\n",
        f'log_file: expected a file in an existing folder, got "{MISSING_DIR}/gearmgr.log"',
    ),
    (
        "pid_file in a missing folder",
        f"pid_file: {MISSING_DIR}/gearmgr.pid\n",
        f'pid_file: expected a file in an existing folder, got "{MISSING_DIR}/gearmgr.pid"',
    ),
    ("unknown user", "user: nosuchuser-gearmgr\n", 'user: expected an existing user, got "nosuch'),
    ("unknown group", "group: nosuchgroup-gearmgr\n", 'group: expected an existing group, got "'),
]


def write(folder: Path, text: str | bytes, name: str = "gearmgr.yaml") -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def gearmgr(*args: str, cwd: Path, timeout: float = 30.0) -> tuple[int, str, str, float]:
    """Run the gearmgr command: exit code, stdout, stderr and the seconds it took."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gearmgr", *args],
        capture_output=True,
        text=True,
        errors="replace",
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "GEARMGR_ALLOW_ROOT": "1"},
    )
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def assert_one_line_error(stderr: str, path: Path, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"gearmgr: {path}"), lines[0]
    assert expected in lines[0], lines[0]


# --- as a user: gearmgr check and gearmgr run -------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in HOSTILE + SYSTEM],
                         ids=[i for i, _, _ in HOSTILE + SYSTEM])  # fmt: skip
def test_check_refuses_in_one_line_and_exits_2(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    code, out, err, took = gearmgr("check", "-c", str(path), cwd=tmp_path)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, path, expected)
    assert took < 3.0  # a Python start-up and the import of gearmgr are most of it


@pytest.mark.parametrize(
    "case", ["alias bomb", "5000-digit count", "control_socket too long", "huge timeout"]
)
def test_run_refuses_in_one_line_and_exits_2(tmp_path: Path, case: str) -> None:
    text, expected = next((t, e) for i, t, e in HOSTILE if i == case)
    path = write(tmp_path, text)
    code, _, err, took = gearmgr("run", "-c", str(path), cwd=tmp_path)
    assert code == 2
    assert_one_line_error(err, path, expected)
    assert took < 3.0


@pytest.mark.parametrize("case", ["log_file in a missing folder", "unknown user"])
def test_run_refuses_what_the_machine_lacks(tmp_path: Path, case: str) -> None:
    text, expected = next((t, e) for i, t, e in SYSTEM if i == case)
    path = write(tmp_path, text)
    code, _, err, _ = gearmgr("run", "-c", str(path), cwd=tmp_path)
    assert code == 2
    assert_one_line_error(err, path, expected)


def test_a_50_mb_config_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "gearmgr.yaml"
    with path.open("w") as file:
        line = "# " + "x" * 1021 + "\n"
        for _ in range(50 * 1024):  # 50 MiB of comments: valid YAML, 40 s to parse before
            file.write(line)
        file.write("count: 1\n")
    code, _, err, took = gearmgr("check", "-c", str(path), cwd=tmp_path)
    assert code == 2
    assert_one_line_error(err, path, "expected a config file of at most 1MiB, got 52428809 bytes")
    assert took < 2.0


def test_an_endless_config_is_refused(tmp_path: Path) -> None:
    code, _, err, took = gearmgr("check", "-c", "/dev/zero", cwd=tmp_path)
    assert code == 2
    assert err.startswith("gearmgr: /dev/zero: expected a config file of at most 1MiB, got ")
    assert took < 2.0


def test_a_config_just_under_the_size_limit_loads(tmp_path: Path) -> None:
    text = "count: 1\n"
    text += "#" * (MAX_FILE_SIZE - len(text) - 1) + "\n"
    path = write(tmp_path, text)
    assert path.stat().st_size == MAX_FILE_SIZE
    assert load_config(path).count == 1
    with path.open("a") as file:
        file.write("\n")
    with pytest.raises(ConfigError, match="expected a config file of at most 1MiB, got 1048577"):
        load_config(path)


# --- in-process, with either YAML parser ------------------------------------------------------


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The bounds hold with libyaml and with PyYAML's pure-Python parser (whose composer
    recurses once per nesting level)."""
    if request.param == "libyaml":
        if not yaml.__with_libyaml__:
            pytest.skip("PyYAML without libyaml")
        monkeypatch.setattr(yamlread, "_LOADER", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yamlread, "_LOADER", yaml.SafeLoader)
    yield request.param


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in HOSTILE + SYSTEM],
                         ids=[i for i, _, _ in HOSTILE + SYSTEM])  # fmt: skip
def test_load_config_refuses_quickly(tmp_path: Path, parser: str, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    took = time.monotonic() - started
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if parser == "libyaml" or "invalid YAML" not in expected:
        assert expected in message
    assert took < (0.5 if parser == "libyaml" else 2.0)


def test_the_biggest_config_within_the_bounds_loads_in_well_under_a_second(
    tmp_path: Path,
) -> None:
    names = ", ".join(f"f{i}" for i in range(yamlread.MAX_VALUES - 10))
    path = write(tmp_path, f"include: [{names}]\n")
    started = time.process_time()  # CPU time: the machine may be busy with other work
    assert len(load_config(path).include) == yamlread.MAX_VALUES - 10
    assert time.process_time() - started < 1.0


def test_aliases_within_the_bounds_still_work() -> None:
    text = (
        "functions:\n"
        "  resize: &slow {timeout: 10m, max_memory: 1GiB}\n"
        "  thumbnail: *slow\n"
        "  report: {<<: *slow, timeout: 1h}\n"
    )
    config = parse_config(text)
    assert config.function("thumbnail").timeout == 600
    assert config.function("report").timeout == 3600
    assert config.function("report").max_memory == 1024**3


def test_the_longest_durations_and_deepest_nesting_allowed_load() -> None:
    config = parse_config(
        "timeout: 576h\nmax_lifetime: 2073600\nmax_memory: 1024TiB\ncount: 1000\n"
    )
    assert config.defaults.timeout == config.defaults.max_lifetime == MAX_DURATION
    nested = "include: " + "[" * (yamlread.MAX_DEPTH - 1) + "a" + "]" * (yamlread.MAX_DEPTH - 1)
    with pytest.raises(ConfigError, match="expected a list of function names"):
        parse_config(nested + "\n")  # deep but within the bound: the key's own check speaks


def test_the_longest_duration_can_be_waited_on() -> None:
    """What the bound is for: epoll, poll, select and a thread's lock all take 576h (they
    raised OverflowError for 365 days, and the worker's watchdog died of it)."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x")  # readable: every wait returns at once
        with selectors.DefaultSelector() as selector:
            selector.register(read_end, selectors.EVENT_READ)
            assert selector.select(MAX_DURATION)
        poll = select.poll()
        poll.register(read_end, select.POLLIN)
        assert poll.poll(MAX_DURATION * 1000)
        assert select.select([read_end], [], [], MAX_DURATION)[0]
        assert threading.Lock().acquire(timeout=MAX_DURATION)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_socket_path_at_the_limit_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    name = "s" * (107 - len(os.fsencode(folder)) - 1)
    config = parse_config(f"control_socket: {folder / name}\n")
    assert len(os.fsencode(config.control_socket)) == 107
    with pytest.raises(ConfigError, match="at most 107 bytes"):
        parse_config(f"control_socket: {folder / name}x\n")


def test_a_relative_socket_path_is_measured_once_resolved(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(ConfigError) as caught:
        parse_config("control_socket: g.sock\n", deep / "gearmgr.yaml")
    assert "control_socket: expected a path of at most 107 bytes" in str(caught.value)


def test_existing_folders_users_and_groups_pass(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    text = f"log_file: log/g.log\npid_file: g.pid\nuser: {user}\ngroup: {group}\n"
    config = load_config(write(tmp_path, text))
    assert (config.user, config.group) == (user, group)
    assert config.log_file == str(tmp_path / "log" / "g.log")


def test_import_ini_style_text_is_not_checked_against_this_machine() -> None:
    # parse_config only reads text: import-ini and the docs' examples name folders and users
    # of another machine.
    config = parse_config(f"log_file: {MISSING_DIR}/g.log\nuser: nosuchuser-gearmgr\n")
    assert config.user == "nosuchuser-gearmgr"


def test_a_reload_to_a_hostile_config_keeps_the_running_one_quickly(tmp_path: Path) -> None:
    """The supervisor's reload calls load_config: an alias bomb must not stall its loop."""
    path = write(tmp_path, alias_bomb(levels=12))
    started = time.process_time()  # CPU time: the machine may be busy with other work
    with pytest.raises(ConfigError):
        load_config(path)
    assert time.process_time() - started < 0.5


# Each error shown in docs/configuration.md's "Limits" that needs no particular machine.
DOC_LIMIT_ERRORS = [
    alias_bomb(),
    "count: 2\n\n\nfunctions:\n  reverse:\n    max_jobs: " + DIGITS + "\n",
    'count: 1\nlog_file: "/var/log/gm\\0.log"\n',
    "count: 1\n\ntimeout: 1000h\n",
    "\n" * 4 + "control_socket: /srv/" + "gearmgr/" * 14 + "gm.sock\n",
]


def test_docs_limit_examples_are_real() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    block = docs.read_text().split("## Limits", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    produced = []
    for text in DOC_LIMIT_ERRORS:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "etc/gearmgr.yaml")
        produced.append(str(caught.value))
    assert block.splitlines()[: len(produced)] == produced


# --- settings for functions that have no worker file ------------------------------------------


def test_check_warns_about_settings_for_a_function_without_a_worker_file(
    tmp_path: Path, workers_dir: Path
) -> None:
    path = write(
        tmp_path,
        "functions:\n  revrese: {timeout: 5s}\n  r_typo: {}\n  reverse: {timeout: 5s}\n"
        "  retired: {}\nexclude: [retired]\n",
    )
    code, out, err, _ = gearmgr("check", "-c", str(path), cwd=tmp_path)
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning: functions.")]
    assert warnings == [
        "warning: functions.r_typo: no worker file defines this function",
        "warning: functions.revrese: no worker file defines this function"
        ' (did you mean "reverse"?)',
    ]


def test_unused_settings_name_the_key_and_the_closest_function() -> None:
    config = parse_config(
        "include: [reverse, counter, sleepy]\nexclude: [old]\n"
        "functions: {revrese: {}, sleepy: {}, old: {}, countr: {}, boom: {}}\n"
    )
    assert config.unused_function_settings(["reverse", "counter"]) == [
        "functions.boom: include leaves this function out, so these settings are not used",
        "functions.countr: include leaves this function out, so these settings are not used (did"
        ' you mean "counter"?)',
        "functions.revrese: include leaves this function out, so these settings are not used (did"
        ' you mean "reverse"?)',
        "functions.sleepy: no worker file defines this function",
    ]
    assert Config().unused_function_settings(["reverse"]) == []


def test_run_logs_the_warning_at_start_up(supervisor_factory: Callable, gearmand: Gearmand) -> None:
    sup = supervisor_factory({"functions": {"revrese": {"timeout": "5s"}}})
    expected = 'functions.revrese: no worker file defines this function (did you mean "reverse"?)'
    wait_for(lambda: expected in sup.log(), timeout=15)
    line = next(line for line in sup.log().splitlines() if expected in line)
    assert "WARNING" in line or "warning" in line.lower()
    sup.assert_alive()


# --- fuzzing -------------------------------------------------------------------------------------


def loads_or_config_error(text: str) -> None:
    """What every text must do: load, or raise ConfigError with one line, within a second."""
    started = time.monotonic()
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)
        str(exc).encode("utf-8")  # printable: no lone surrogates
    assert time.monotonic() - started < 1.0


# Pieces of YAML that reach every branch of the bounds: anchors, aliases, merges, tags,
# flow and block collections, keys of every type, escapes, long numbers.
TOKENS = [
    "\n", " ", "  ", "- ", ": ", ", ", "[", "]", "{", "}", "? ", "&a ", "*a", "&b ", "*b", "<<: ",
    "!!int ", "!!str ", "!!float ", "!!timestamp ", "!!binary ", "!!python/name:os.system ",
    "!!set ", "!!omap ", "'", '"', "#", "---\n", "...\n", "~", "null", "true", "on", "1", "0x1F",
    "1_000", "1:30", "-5", "1.5e+3", ".inf", ".nan", DIGITS, "9" * 25, "\\0", "\\x85", "\\ud800",
    "\\e", "\t", "\x00", "\ufeff", "count", "functions", "reverse", "timeout", "5s", "576h",
    "577h", "max_memory", "1024TiB", "servers", "gm1:4730", "log_file", "control_socket",
    "/tmp/x", "include", "dedicated_only", "2001-13-01", "user", "metrics", "|", ">",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
@example(f"count: {DIGITS}\n")
@example("include: " + "[" * 5000 + "]" * 5000)
@example("functions: " + "{a: " * 5000 + "1" + "}" * 5000)
@example(alias_bomb())
@example(mapping_bomb())
@example("count: !!timestamp 2001-13-01\n")
@example('log_file: "a\\0b"\n')
@example("servers: &s [gm1, *s]\n")
@example('timeout: "1e999"\nmax_memory: "' + DIGITS + 'KiB"\n')
def test_fuzz_yaml_pieces(text: str) -> None:
    loads_or_config_error(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_text(text: str) -> None:
    loads_or_config_error(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
@example(b"\xff\xfe\x00c\x00o")
@example(b"count: 1\n\x00")
def test_fuzz_any_bytes_from_a_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), data)
        try:
            load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["5s", "577h", "1024TiB", "1025TiB", "gm1:4730", "gm1:0", "syslog", "/tmp"])
)
KEY_NAMES = st.sampled_from([*KEY, "functions", "reverse", "<<"]) | st.text(max_size=8)
STRUCTURES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY_NAMES, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEY_NAMES, STRUCTURES, max_size=6))
@example({"timeout": 10**20})
@example({"count": 10**20})
@example({"max_memory": 1e300})
@example({"servers": ["gm1:" + "0" * 30 + "1"]})
@example({"control_socket": "/" + "s" * 300})
@example({"functions": {"reverse": {"timeout": 1e300}}})
def test_fuzz_yaml_structures(data: dict) -> None:
    loads_or_config_error(yaml.safe_dump(data, allow_unicode=True))
